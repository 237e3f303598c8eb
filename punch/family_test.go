package punch

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

func TestPreferIPv6LowerRTTWinsAndIPv6WinsTies(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		v4, v6 time.Duration
		want   bool
	}{
		{10 * ms, 10 * ms, true},                                // equal
		{10 * ms, 10*ms + 900*time.Microsecond, true},           // within 1 ms
		{10 * ms, 12 * ms, false},                               // 20 % slower
		{50 * ms, 54 * ms, true},                                // within 10 %
		{50 * ms, 56 * ms, false},                               // beyond 10 %
		{20 * ms, 5 * ms, true},                                 // faster
		{200 * time.Microsecond, 1100 * time.Microsecond, true}, // LAN jitter: the 1 ms floor
		{200 * time.Microsecond, 1300 * time.Microsecond, false},
	} {
		if got := PreferIPv6(c.v4, c.v6); got != c.want {
			t.Errorf("PreferIPv6(%v, %v) = %v, want %v", c.v4, c.v6, got, c.want)
		}
	}
}

// echoPeer answers every full-TTL ping with a pong after the delay of the
// destination's family; a family without a delay is unreachable.
type echoPeer struct {
	sess       *Session
	self, peer identity.ID
	nonce      [8]byte
	delay      map[int]time.Duration
	wg         sync.WaitGroup
	mu         sync.Mutex
	stopped    bool
}

func (e *echoPeer) WriteTo(b []byte, to netip.AddrPort, ttl int) error {
	d, ok := e.delay[family(to.Addr())]
	pr, err := wire.ParseProbe(b)
	if !ok || ttl > 0 || err != nil || pr.Pong {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil
	}
	pong := wire.AppendProbe(nil, wire.Probe{Pong: true, Nonce: e.nonce, From: e.peer, To: e.self, Observed: to})
	e.wg.Go(func() {
		time.Sleep(d)
		e.sess.Handle(e, to, pong)
	})
	return nil
}

func (e *echoPeer) stop() {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.wg.Wait()
}

var (
	peer4 = netip.MustParseAddrPort("198.51.100.7:19192")
	peer6 = netip.MustParseAddrPort("[2001:db8:7::10]:19192")
)

// choose runs a dialing side's attempt toward a dual-stack peer whose
// families answer after the given delays, and returns the path and how
// long it took.
func choose(t *testing.T, delay map[int]time.Duration, dial bool) (Result, time.Duration, error) {
	t.Helper()
	var self, peer identity.ID
	self[0], peer[0] = 1, 2
	e := &echoPeer{self: self, peer: peer, nonce: [8]byte{9}, delay: delay}
	lim := patient
	lim.Settle = 300 * time.Millisecond
	e.sess = New(Params{Nonce: e.nonce, Self: self, Peer: peer, PeerAddrs: []netip.AddrPort{peer4, peer6},
		SelfNAT: wire.NATEasy, PeerNAT: wire.NATEasy, Dial: dial}, e, lim)
	defer e.stop()
	start := time.Now()
	r, err := e.sess.Run(context.Background())
	return r, time.Since(start), err
}

func TestDualStackPeerEqualRTTsGoOverIPv6(t *testing.T) {
	r, _, err := choose(t, map[int]time.Duration{0: 5 * time.Millisecond, 1: 5 * time.Millisecond}, true)
	if err != nil || r.Remote != peer6 {
		t.Fatalf("path %v (%v), want IPv6 %v", r.Remote, err, peer6)
	}
}

func TestDualStackPeerMuchFasterIPv4Wins(t *testing.T) {
	r, _, err := choose(t, map[int]time.Duration{0: 5 * time.Millisecond, 1: 60 * time.Millisecond}, true)
	if err != nil || r.Remote != peer4 {
		t.Fatalf("path %v (%v), want IPv4 %v", r.Remote, err, peer4)
	}
}

func TestDualStackPeerFasterIPv6Wins(t *testing.T) {
	r, _, err := choose(t, map[int]time.Duration{0: 60 * time.Millisecond, 1: 5 * time.Millisecond}, true)
	if err != nil || r.Remote != peer6 {
		t.Fatalf("path %v (%v), want IPv6 %v", r.Remote, err, peer6)
	}
}

// Two hard NATs: IPv4 never answers, IPv6 does; the choice waits the
// settle time for IPv4, no longer.
func TestDualStackPeerOnlyIPv6Answers(t *testing.T) {
	r, took, err := choose(t, map[int]time.Duration{1: 5 * time.Millisecond}, true)
	if err != nil || r.Remote != peer6 {
		t.Fatalf("path %v (%v), want IPv6 %v", r.Remote, err, peer6)
	}
	if took > 2*time.Second {
		t.Fatalf("took %v: the choice did not end at the settle time", took)
	}
}

func TestDualStackPeerOnlyIPv4Answers(t *testing.T) {
	r, _, err := choose(t, map[int]time.Duration{0: 5 * time.Millisecond}, true)
	if err != nil || r.Remote != peer4 {
		t.Fatalf("path %v (%v), want IPv4 %v", r.Remote, err, peer4)
	}
}

// The side that does not dial keeps the first path's socket, as before:
// the dialer's choice is what counts.
func TestNonDialingSideTakesTheFirstPath(t *testing.T) {
	r, took, err := choose(t, map[int]time.Duration{0: 5 * time.Millisecond, 1: 40 * time.Millisecond}, false)
	if err != nil || r.Remote != peer4 {
		t.Fatalf("path %v (%v), want the first, IPv4 %v", r.Remote, err, peer4)
	}
	if took > 200*time.Millisecond {
		t.Fatalf("took %v: the non-dialing side waited", took)
	}
}
