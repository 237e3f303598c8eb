package punch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// fast keeps the unit tests quick while exercising every phase.
var fast = Limits{ProbeTime: 700 * time.Millisecond, SprayPorts: 256, RandomProbes: 2048, RandomTime: 300 * time.Millisecond}

// patient is fast for attempts that must succeed: a loaded machine (-race,
// other packages' tests) may fall behind fast's schedule and send only part
// of the random probes within 700 ms, which is not what those tests check.
// A success ends an attempt at once, so the longer bound costs nothing.
var patient = Limits{ProbeTime: 5 * time.Second, SprayPorts: 256, RandomProbes: 2048, RandomTime: 300 * time.Millisecond}

// side is one peer in the simulated network.
type side struct {
	t     *testing.T
	id    identity.ID
	host  *simHost
	main  *simSock
	nat   string
	cands []netip.AddrPort
	sess  *Session

	mu   sync.Mutex
	data []delivery // DATA datagrams received, with the socket
}

const dataMark = "DATA"

func newSide(t *testing.T, n *simNet, idByte byte, h *simHost, nat string) *side {
	s := &side{t: t, host: h, nat: nat}
	s.id[0] = idByte
	s.main = n.listen(h, 19192)
	s.main.handler = s.receive
	// Control's view of the main socket is the first candidate, then the
	// host's own address, as the client reports them.
	ctl := n.public[netip.MustParseAddr("203.0.113.1")]
	var observed netip.AddrPort
	ctlSock := ctl.socks[19190]
	ctlSock.handler = func(_ *simSock, from netip.AddrPort, _ []byte) { observed = from }
	_ = s.main.WriteTo([]byte("hello"), ctlSock.addr(), 0)
	s.cands = []netip.AddrPort{observed}
	if observed != s.main.addr() {
		s.cands = append(s.cands, s.main.addr())
	}
	return s
}

func (s *side) receive(sock *simSock, from netip.AddrPort, b []byte) {
	if bytes.HasPrefix(b, []byte(dataMark)) {
		s.mu.Lock()
		s.data = append(s.data, delivery{sock, from})
		s.mu.Unlock()
		return
	}
	if s.sess != nil {
		s.sess.Handle(sock, from, b)
	}
}

func newWorld(t *testing.T, seed uint64) *simNet {
	n := newSimNet(seed)
	ctl := n.host("203.0.113.1", nil)
	n.listen(ctl, 19190)
	return n
}

// prepare makes the two sessions of one attempt, with spray sockets where
// the NAT kinds call for them.
func prepare(n *simNet, a, b *side, lim Limits, openTTL int) {
	var nonce [wire.PunchNonceLen]byte
	nonce[0] = byte(n.rng.Uint32())
	for _, pair := range [][2]*side{{a, b}, {b, a}} {
		me, peer := pair[0], pair[1]
		me.sess = New(Params{Nonce: nonce, Self: me.id, Peer: peer.id, PeerAddrs: peer.cands,
			SelfNAT: me.nat, PeerNAT: peer.nat, OpenTTL: openTTL}, me.main, lim)
	}
}

func (s *side) open(n *simNet) {
	var spray []Conn
	for range s.sess.WantsSpray() {
		c := n.listen(s.host, 0)
		c.handler = s.receive
		spray = append(spray, c)
	}
	s.sess.Open(spray)
}

func runBoth(a, b *side) (ra, rb Result, ea, eb error) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ra, ea = a.sess.Run(context.Background()) }()
	go func() { defer wg.Done(); rb, eb = b.sess.Run(context.Background()) }()
	wg.Wait()
	return
}

// checkPath sends a datagram each way over the found path and checks that
// it arrives on the socket the other side chose, from the address it chose.
func checkPath(t *testing.T, a, b *side, ra, rb Result) {
	t.Helper()
	for _, d := range []struct {
		from, to *side
		r, rr    Result
	}{{a, b, ra, rb}, {b, a, rb, ra}} {
		d.to.mu.Lock()
		d.to.data = nil
		d.to.mu.Unlock()
		_ = d.r.Conn.WriteTo([]byte(dataMark), d.r.Remote, 0)
		d.to.mu.Lock()
		got := d.to.data
		d.to.mu.Unlock()
		if len(got) != 1 || got[0].to != d.rr.Conn.(*simSock) || got[0].from != d.rr.Remote {
			t.Fatalf("data over the punched path did not arrive where the other side expects it: got %+v, want on %v from %v",
				got, d.rr.Conn.(*simSock).addr(), d.rr.Remote)
		}
	}
}

func punchOK(t *testing.T, n *simNet, a, b *side) (Result, Result) {
	t.Helper()
	ra, rb, err := tryPunch(n, a, b)
	if err != nil {
		t.Fatal(err)
	}
	checkPath(t, a, b, ra, rb)
	return ra, rb
}

// tryPunch runs one attempt between a and b.
func tryPunch(n *simNet, a, b *side) (Result, Result, error) {
	prepare(n, a, b, patient, 0)
	a.open(n)
	b.open(n)
	ra, rb, ea, eb := runBoth(a, b)
	if ea != nil || eb != nil {
		return ra, rb, fmt.Errorf("punch failed: %v / %v (stats %+v / %+v)", ea, eb, a.sess.Stats(), b.sess.Stats())
	}
	return ra, rb, nil
}

func TestEasyNATsPunchThroughWithBarrier(t *testing.T) {
	n := newWorld(t, 1)
	a := newSide(t, n, 1, n.host("10.0.1.2", n.router("198.51.100.1", "easy")), wire.NATEasy)
	b := newSide(t, n, 2, n.host("10.0.2.2", n.router("198.51.100.2", "easy")), wire.NATEasy)
	ra, _ := punchOK(t, n, a, b)
	if ra.Remote != b.cands[0] {
		t.Fatalf("path to %v, want the peer's public address %v", ra.Remote, b.cands[0])
	}
}

// The failure mode this package exists to avoid: one side's full-TTL
// packets reach the far Linux NAT before the far side has sent anything, the
// router keeps a conntrack entry for them, and the far side's own packets
// then leave from another port.
func TestEarlyFullTTLPacketsBreakALinuxNAT(t *testing.T) {
	n := newWorld(t, 2)
	a := newSide(t, n, 1, n.host("10.0.1.2", n.router("198.51.100.1", "easy")), wire.NATEasy)
	b := newSide(t, n, 2, n.host("10.0.2.2", n.router("198.51.100.2", "easy")), wire.NATEasy)
	prepare(n, a, b, fast, 64)
	a.open(n) // early, at full TTL
	b.open(n)
	_, _, ea, eb := runBoth(a, b)
	if !errors.Is(ea, ErrNoPath) || !errors.Is(eb, ErrNoPath) {
		t.Fatalf("expected the naive sequence to fail on this NAT model, got %v / %v", ea, eb)
	}
}

// Low-TTL opening packets make the order of the two sides' opening phases
// irrelevant: only the barrier before full-TTL probes matters.
func TestLowTTLOpeningSurvivesSkew(t *testing.T) {
	n := newWorld(t, 3)
	a := newSide(t, n, 1, n.host("10.0.1.2", n.router("198.51.100.1", "easy")), wire.NATEasy)
	b := newSide(t, n, 2, n.host("10.0.2.2", n.router("198.51.100.2", "easy")), wire.NATEasy)
	prepare(n, a, b, fast, 0)
	a.open(n)
	time.Sleep(100 * time.Millisecond)
	b.open(n)
	ra, rb, ea, eb := runBoth(a, b)
	if ea != nil || eb != nil {
		t.Fatalf("punch failed: %v / %v", ea, eb)
	}
	checkPath(t, a, b, ra, rb)
}

// One attempt finds a path with probability 1 - e^(-2048·256/64512), above
// 99.9 %; the client escalates to another many-port attempt after a failed
// one, and so does this test (in a fresh world: the failed attempt's
// probes left conntrack entries behind), so that its outcome is not a
// matter of luck.
func TestHardNATAgainstEasyNATFindsPathBySpraying(t *testing.T) {
	for seed := uint64(10); seed < 13; seed++ {
		var n *simNet
		var hard, easy *side
		var rh, re Result
		var err error
		for try := range 2 {
			n = newWorld(t, seed+uint64(100*try))
			hard = newSide(t, n, 1, n.host("10.0.1.2", n.router("198.51.100.1", "hard")), wire.NATHard)
			easy = newSide(t, n, 2, n.host("10.0.2.2", n.router("198.51.100.2", "easy")), wire.NATEasy)
			if rh, re, err = tryPunch(n, hard, easy); err == nil {
				break
			}
			t.Logf("seed %d, attempt %d: %v", seed, try+1, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		checkPath(t, hard, easy, rh, re)
		if rh.Conn == Conn(hard.main) {
			t.Fatalf("the hard side's path uses its main socket; expected a spray socket")
		}
		if re.Remote.Addr() != netip.MustParseAddr("198.51.100.1") {
			t.Fatalf("easy side's path goes to %v", re.Remote)
		}
		st := easy.sess.Stats()
		if st.Random > fast.RandomProbes || hard.sess.Stats().Opened != 256+len(easy.cands) {
			t.Fatalf("bounds exceeded: easy %+v hard %+v", st, hard.sess.Stats())
		}
		t.Logf("seed %d: path after %d random probes", seed, st.Random)
	}
}

func TestHardNATsOnBothSidesGiveUpWithinBounds(t *testing.T) {
	n := newWorld(t, 4)
	a := newSide(t, n, 1, n.host("10.0.1.2", n.router("198.51.100.1", "hard")), wire.NATHard)
	b := newSide(t, n, 2, n.host("10.0.2.2", n.router("198.51.100.2", "hard")), wire.NATHard)
	prepare(n, a, b, fast, 0)
	before := n.packets
	start := time.Now()
	a.open(n)
	b.open(n)
	_, _, ea, eb := runBoth(a, b)
	if !errors.Is(ea, ErrNoPath) || !errors.Is(eb, ErrNoPath) {
		t.Fatalf("hard↔hard found a path: %v / %v", ea, eb)
	}
	if sent := n.packets - before; sent > 2*len(pingSchedule)*2+8 {
		t.Fatalf("sent %d packets, more than the ping schedule allows", sent)
	}
	if el := time.Since(start); el > fast.ProbeTime+500*time.Millisecond {
		t.Fatalf("gave up after %v, limit %v", el, fast.ProbeTime)
	}
}

func TestPortMappingOpensAHardNAT(t *testing.T) {
	n := newWorld(t, 5)
	ra := n.router("198.51.100.1", "hard")
	rb := n.router("198.51.100.2", "hard")
	a := newSide(t, n, 1, n.host("10.0.1.2", ra), wire.NATHard)
	b := newSide(t, n, 2, n.host("10.0.2.2", rb), wire.NATHard)
	rb.forwards[40000] = b.main.addr()
	b.cands = append(b.cands, netip.MustParseAddrPort("198.51.100.2:40000"))
	_, rbRes := punchOK(t, n, a, b)
	if rbRes.Conn != Conn(b.main) {
		t.Fatal("the mapped side did not use its main socket")
	}
}

func TestPublicHostAndFirewallPunch(t *testing.T) {
	n := newWorld(t, 6)
	pub := newSide(t, n, 1, n.host("192.0.2.10", nil), wire.NATNone)
	fw := newSide(t, n, 2, n.host("192.0.2.20", n.router("198.51.100.9", "firewall")), wire.NATNone)
	easy := newSide(t, n, 3, n.host("10.0.3.2", n.router("198.51.100.3", "easy")), wire.NATEasy)
	punchOK(t, n, pub, easy)
	punchOK(t, n, fw, easy)
	punchOK(t, n, fw, pub)
}

func TestPeersOnOneLANUseTheirLANAddresses(t *testing.T) {
	n := newWorld(t, 7)
	r := n.router("198.51.100.1", "easy")
	a := newSide(t, n, 1, n.host("10.0.1.2", r), wire.NATEasy)
	b := newSide(t, n, 2, n.host("10.0.1.3", r), wire.NATEasy)
	ra, _ := punchOK(t, n, a, b)
	if ra.Remote != b.main.addr() {
		t.Fatalf("path to %v, want the LAN address %v", ra.Remote, b.main.addr())
	}
}

func TestProbesOfOtherAttemptsAreIgnored(t *testing.T) {
	var self, peer identity.ID
	self[0], peer[0] = 1, 2
	s := New(Params{Nonce: [8]byte{7}, Self: self, Peer: peer, PeerAddrs: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:1")}}, nopConn{}, fast)
	from := netip.MustParseAddrPort("192.0.2.1:1")
	for _, p := range []wire.Probe{
		{Nonce: [8]byte{8}, From: peer, To: self}, // another attempt
		{Nonce: [8]byte{7}, From: self, To: peer}, // our own, reflected
		{Nonce: [8]byte{7}, From: peer, To: peer}, // for someone else
	} {
		if s.Handle(nopConn{}, from, wire.AppendProbe(nil, p)) {
			t.Fatalf("probe %+v taken", p)
		}
	}
	if s.Handle(nopConn{}, from, []byte("noise")) {
		t.Fatal("noise taken")
	}
	if _, err := s.Result(); !errors.Is(err, ErrNoPath) {
		t.Fatal("a path was named by foreign probes")
	}
	if !s.Handle(nopConn{}, from, wire.AppendProbe(nil, wire.Probe{Nonce: [8]byte{7}, From: peer, To: self})) {
		t.Fatal("the peer's ping was not taken")
	}
	if r, err := s.Result(); err != nil || r.Remote != from {
		t.Fatalf("Result = %+v, %v", r, err)
	}
}

type nopConn struct{}

func (nopConn) WriteTo([]byte, netip.AddrPort, int) error { return nil }

// A public side's opening packets would travel one hop further than a NATed
// side's and reach the far NAT, whose next new mapping would then move to
// another port (and Linux reuses that moved port for later destinations
// too). So a side without NAT sends none, and the NAT stays clean for the
// next peer.
func TestPublicSideLeavesTheFarNATClean(t *testing.T) {
	n := newWorld(t, 8)
	pub := newSide(t, n, 1, n.host("192.0.2.10", nil), wire.NATNone)
	easy := newSide(t, n, 2, n.host("10.0.2.2", n.router("198.51.100.2", "easy")), wire.NATEasy)
	other := newSide(t, n, 3, n.host("10.0.3.2", n.router("198.51.100.3", "easy")), wire.NATEasy)
	punchOK(t, n, pub, easy)
	opened := pub.sess.Stats().Opened
	_, re := punchOK(t, n, other, easy)
	if re.Remote != other.cands[0] {
		t.Fatalf("second peer reached at %v, want %v", re.Remote, other.cands[0])
	}
	if opened != 0 {
		t.Fatalf("the public side sent %d opening packets", opened)
	}
}
