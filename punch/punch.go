// Package punch finds a direct UDP path between two peers behind NATs: one
// attempt (a Session) per nonce that control handed to both sides.
//
// The sequence, and why (docs/nat-traversal.md has the long form):
//
//  1. Open: each side sends opening packets with a low TTL to every candidate
//     of the other. They leave the sender's own NAT (creating its mapping and
//     the filter entry that lets the peer's packets in) and die before they
//     reach the far NAT. A packet that did reach the far NAT before the far
//     side had opened would make a Linux router create a conntrack entry for
//     it, after which the far side's own outbound packet gets a different
//     public port and the hole never opens.
//  2. Each side tells control it has opened; control answers both with "go"
//     once both have (a barrier).
//  3. Probe: both sides ping every candidate at full TTL for a bounded time;
//     a ping is answered by a pong from the socket that received it. The
//     first ping or pong received names the path: (our socket, their address).
//
// A side whose NAT maps endpoint-dependently ("hard") toward a side whose NAT
// does not ("easy" or none) opens SprayPorts extra sockets and sends low-TTL
// opening packets from each to the peer's public address; the easy side then
// pings random ports of the hard side's public address. With 256 open
// mappings out of ~64k ports, 2048 random probes find one with probability
// above 99.9 % (the birthday-style odds of tailscale's write-up).
package punch

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// Conn is one UDP socket a session sends from.
type Conn interface {
	// WriteTo sends b to addr; ttl > 0 sets the IP TTL (hop limit) of this
	// packet only.
	WriteTo(b []byte, addr netip.AddrPort, ttl int) error
}

// Params describes one attempt, as control described it to this side.
type Params struct {
	Nonce      [wire.PunchNonceLen]byte
	Self, Peer identity.ID
	PeerAddrs  []netip.AddrPort // the peer's candidates, its public (observed) address first
	SelfNAT    string           // wire.NAT* values
	PeerNAT    string
	OpenTTL    int // TTL of opening packets; 0 means DefaultOpenTTL
	// Unvouched says PeerAddrs[0] is not the address control observed for
	// the peer (this side cannot use that one): then every candidate is
	// the peer's own word, all of them are budgeted, and no many-port
	// probing aims at them.
	Unvouched bool
	// Dial says this side dials the path found, and so chooses it: toward
	// a peer with candidates of both address families it waits for both
	// and picks by RTT (family.go). The other side takes the first path,
	// as the dialer can only use a path whose socket it keeps open.
	Dial bool
}

// DefaultOpenTTL leaves the host and its first router (the NAT) and dies at
// the next hop.
const DefaultOpenTTL = 2

// Limits bound an attempt in time and packets.
type Limits struct {
	ProbeTime    time.Duration // how long to probe after go
	SprayPorts   int           // extra sockets on a hard side facing an easy one
	RandomProbes int           // random-port probes from an easy side toward a hard one
	RandomTime   time.Duration // spread of the random probes
	// Budget, shared by a client's attempts, bounds the probes to every
	// candidate but the first (the address control observed for the peer);
	// nil means unbounded.
	Budget *Budget
	// Settle is how long a dialing side waits, after the first path of one
	// address family, for a path of the other; 0 means DefaultSettle.
	Settle time.Duration
}

// DefaultSettle covers the first three ping rounds (0, 50, 150 ms) plus a
// round trip: a firewall opened only by the peer's first full-TTL ping
// drops our first round, so the second family may need a later one.
const DefaultSettle = 250 * time.Millisecond

// DefaultLimits are what the client uses.
var DefaultLimits = Limits{ProbeTime: 3 * time.Second, SprayPorts: 256, RandomProbes: 2048, RandomTime: 2 * time.Second}

// pingSchedule is when, after go, every candidate is pinged again: often at
// first, when both sides have just opened, then sparser.
var pingSchedule = []time.Duration{0, 50 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond,
	600 * time.Millisecond, time.Second, 1500 * time.Millisecond, 2 * time.Second, 2500 * time.Millisecond}

// Result is the path a session found: send from Conn to Remote.
type Result struct {
	Conn   Conn
	Remote netip.AddrPort
}

// Stats counts what an attempt sent and received.
type Stats struct {
	Opened   int // low-TTL opening packets
	Pings    int // full-TTL pings to candidates
	Random   int // random-port pings
	Pongs    int // pongs sent
	Received int // pings and pongs of this attempt received
	Pairs    int // (socket, address) pairs probed
}

// ErrNoPath is returned when probing ends without a path.
var ErrNoPath = errors.New("no direct path found")

// Session is one punch attempt. Handle may be called from any goroutine.
type Session struct {
	p     Params
	lim   Limits
	main  Conn
	found chan struct{}

	mu     sync.Mutex
	spray  []Conn
	result *Result
	stats  Stats
	// Choosing between families (Params.Dial toward a dual-stack peer):
	// the first path of each, the time of the latest ping to each peer
	// address (to time pongs), and seen, closed at the first path.
	dual   bool
	paths  [2]*pathSample
	sent   map[netip.Addr]time.Time
	seen   chan struct{}
	seenAt time.Time
}

// New prepares an attempt whose main socket is main.
func New(p Params, main Conn, lim Limits) *Session {
	if p.OpenTTL <= 0 {
		p.OpenTTL = DefaultOpenTTL
	}
	if lim.Settle <= 0 {
		lim.Settle = DefaultSettle
	}
	return &Session{p: p, lim: lim, main: main, found: make(chan struct{}),
		dual: p.Dial && dualStack(p.PeerAddrs), sent: map[netip.Addr]time.Time{}, seen: make(chan struct{})}
}

// WantsSpray reports whether this side should open extra sockets: it maps
// hard and the peer does not.
func (s *Session) WantsSpray() int {
	if s.p.SelfNAT == wire.NATHard && s.p.PeerNAT != wire.NATHard && len(s.p.PeerAddrs) > 0 && !s.p.Unvouched {
		return s.lim.SprayPorts
	}
	return 0
}

// wantsRandom reports whether this side should probe random ports: the peer
// maps hard and we do not.
func (s *Session) wantsRandom() bool {
	return s.p.PeerNAT == wire.NATHard && s.p.SelfNAT != wire.NATHard && len(s.p.PeerAddrs) > 0 && !s.p.Unvouched
}

func (s *Session) ping() []byte {
	return wire.AppendProbe(nil, wire.Probe{Nonce: s.p.Nonce, From: s.p.Self, To: s.p.Peer})
}

// Open sends the low-TTL opening packets, from the main socket to every
// candidate and from each spray socket to the peer's public address.
func (s *Session) Open(spray []Conn) {
	s.mu.Lock()
	s.spray = spray
	s.mu.Unlock()
	b := s.ping()
	n := 0
	// A side without NAT has nothing to open (a stateful firewall drops
	// unsolicited packets without keeping state, so its first full-TTL ping
	// opens it in time). Its opening packets would also travel one hop
	// further than a NATed side's and could reach the far NAT.
	if s.p.SelfNAT != wire.NATNone {
		for i, a := range s.p.PeerAddrs {
			if s.sendMain(i, b, a, s.p.OpenTTL) {
				n++
			}
		}
	}
	if len(spray) > 0 {
		for _, c := range spray {
			if c.WriteTo(b, s.p.PeerAddrs[0], s.p.OpenTTL) == nil {
				n++
			}
		}
	}
	s.mu.Lock()
	s.stats.Opened += n
	s.mu.Unlock()
}

// Run probes after go until a path is found, ctx ends, or the limits are
// reached.
func (s *Session) Run(ctx context.Context) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.lim.ProbeTime)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.wantsRandom() {
		wg.Add(1)
		go func() { defer wg.Done(); s.randomProbes(ctx) }()
	}
	b := s.ping()
	start := time.Now()
	s.mu.Lock()
	s.stats.Pairs += len(s.p.PeerAddrs) * (1 + len(s.spray))
	s.mu.Unlock()
	// A dual-stack choice ends Settle after the first path at the latest.
	seen := s.seen
	if !s.dual {
		seen = nil
	}
	var settle *time.Timer
	defer func() {
		if settle != nil {
			settle.Stop()
		}
	}()
	var settled <-chan time.Time
	// wait reports whether probing goes on after d.
	wait := func(d <-chan time.Time) bool {
		for {
			select {
			case <-s.found:
				return false
			case <-ctx.Done():
				return false
			case <-seen:
				seen = nil
				settle = time.NewTimer(time.Until(s.seenTime().Add(s.lim.Settle)))
				settled = settle.C
			case <-settled:
				return false
			case <-d:
				return true
			}
		}
	}
	for _, at := range pingSchedule {
		if at >= s.lim.ProbeTime {
			break
		}
		t := time.NewTimer(time.Until(start.Add(at)))
		more := wait(t.C)
		t.Stop()
		if !more {
			return s.Result()
		}
		n := 0
		for i, a := range s.p.PeerAddrs {
			if s.sendMain(i, b, a, 0) {
				n++
			}
		}
		s.mu.Lock()
		s.stats.Pings += n
		s.mu.Unlock()
	}
	wait(nil)
	return s.Result()
}

// sendMain sends b from the main socket to the peer's i-th candidate, if
// the budget allows: the first, when it is the peer's observed address,
// always may be probed.
func (s *Session) sendMain(i int, b []byte, a netip.AddrPort, ttl int) bool {
	if (i > 0 || s.p.Unvouched) && s.lim.Budget != nil && !s.lim.Budget.take(a) {
		return false
	}
	if s.main.WriteTo(b, a, ttl) != nil {
		return false
	}
	if ttl == 0 {
		s.noteSent(a.Addr())
	}
	return true
}

// noteSent records when a full-TTL ping went to addr, so that a pong from
// it can be timed.
func (s *Session) noteSent(addr netip.Addr) {
	s.mu.Lock()
	s.sent[addr] = time.Now()
	s.mu.Unlock()
}

// randomProbes pings random ports of the peer's public address, evenly
// spread over RandomTime.
func (s *Session) randomProbes(ctx context.Context) {
	const batches = 100
	per := (s.lim.RandomProbes + batches - 1) / batches
	tick := time.NewTicker(max(s.lim.RandomTime/batches, time.Millisecond))
	defer tick.Stop()
	ip := s.p.PeerAddrs[0].Addr()
	b := s.ping()
	sent := 0
	for sent < s.lim.RandomProbes {
		for i := 0; i < per && sent < s.lim.RandomProbes; i++ {
			port := uint16(1024 + rand.IntN(65536-1024))
			if s.main.WriteTo(b, netip.AddrPortFrom(ip, port), 0) == nil {
				sent++
			}
		}
		s.noteSent(ip)
		s.mu.Lock()
		s.stats.Random = sent
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-s.found:
			return
		case <-tick.C:
		}
	}
}

// Result returns the path found, or ErrNoPath. A dual-stack choice still
// waiting for its second family is made now, from the paths seen.
func (s *Session) Result() (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.result == nil {
		s.chooseLocked()
	}
	if s.result == nil {
		return Result{}, ErrNoPath
	}
	return *s.result, nil
}

// Stats returns the counters so far.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Handle takes a datagram received on c from `from`. It reports whether the
// datagram was a probe of this attempt. A ping is answered with a pong from
// the same socket; the first ping or pong names the path. Once a path is
// named, only probes on it are answered, so that both sides settle on the
// same sockets.
func (s *Session) Handle(c Conn, from netip.AddrPort, b []byte) bool {
	pr, err := wire.ParseProbe(b)
	if err != nil || pr.Nonce != s.p.Nonce || pr.From != s.p.Peer || pr.To != s.p.Self {
		return false
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if s.lim.Budget != nil {
		s.lim.Budget.answered(from)
	}
	now := time.Now()
	s.mu.Lock()
	s.stats.Received++
	if s.result != nil && s.result.Conn != c {
		s.mu.Unlock()
		return true
	}
	if s.result == nil && !s.dual {
		s.result = &Result{Conn: c, Remote: from}
		close(s.found)
	}
	if s.result == nil && !s.notePathLocked(c, from, pr.Pong, now) {
		s.mu.Unlock()
		return true
	}
	s.mu.Unlock()
	if !pr.Pong {
		pong := wire.AppendProbe(nil, wire.Probe{Pong: true, Nonce: s.p.Nonce, From: s.p.Self, To: s.p.Peer, Observed: from})
		if c.WriteTo(pong, from, 0) == nil {
			s.mu.Lock()
			s.stats.Pongs++
			s.mu.Unlock()
		}
	}
	return true
}
