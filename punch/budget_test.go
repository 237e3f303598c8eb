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

// countConn counts what is sent to each address.
type countConn struct {
	mu   sync.Mutex
	sent map[netip.AddrPort]int
}

func (c *countConn) WriteTo(_ []byte, a netip.AddrPort, _ int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent[a]++
	return nil
}

func (c *countConn) count(a netip.AddrPort) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent[a]
}

// attempts runs n attempts that find nothing, all sharing lim's budget.
func attempts(t *testing.T, n int, p Params, c Conn, lim Limits) {
	t.Helper()
	for i := range n {
		p.Nonce[0] = byte(i)
		s := New(p, c, lim)
		s.Open(nil)
		if _, err := s.Run(context.Background()); err == nil {
			t.Fatal("an attempt without answers found a path")
		}
	}
}

var (
	observed = netip.MustParseAddrPort("198.51.100.7:4000")
	victim   = netip.MustParseAddrPort("203.0.113.9:53")
)

func budgetParams() Params {
	var self, peer identity.ID
	self[0], peer[0] = 1, 2
	return Params{Self: self, Peer: peer, PeerAddrs: []netip.AddrPort{observed, victim}, SelfNAT: wire.NATEasy, PeerNAT: wire.NATEasy}
}

// A peer's candidates other than its observed address are its own word: an
// address that never answers gets at most UnansweredProbes packets however
// many attempts name it, while the observed address is probed in full.
func TestSilentCandidatesGetABoundedNumberOfProbesAcrossAttempts(t *testing.T) {
	c := &countConn{sent: map[netip.AddrPort]int{}}
	lim := fast
	lim.Budget = NewBudget()
	attempts(t, 5, budgetParams(), c, lim)
	perAttempt := c.count(observed) / 5
	if perAttempt < 2 {
		t.Fatalf("the observed address got %d packets per attempt", perAttempt)
	}
	if got := c.count(victim); got != UnansweredProbes || 5*perAttempt <= UnansweredProbes {
		t.Fatalf("a silent candidate got %d packets in 5 attempts of %d each, want the budget of %d",
			got, perAttempt, UnansweredProbes)
	}

	// Without a budget the same attempts send all of them: the bound is
	// the budget's doing.
	free := &countConn{sent: map[netip.AddrPort]int{}}
	attempts(t, 5, budgetParams(), free, fast)
	if free.count(victim) != 5*perAttempt {
		t.Fatalf("unbudgeted: %d packets to the candidate, want %d", free.count(victim), 5*perAttempt)
	}
}

// Once a probe of an attempt came from an address, it is a peer's and is
// probed without limit.
func TestAnAddressThatAnsweredIsNotLimited(t *testing.T) {
	c := &countConn{sent: map[netip.AddrPort]int{}}
	lim := fast
	lim.Budget = NewBudget()
	p := budgetParams()
	attempts(t, 4, p, c, lim)
	before := c.count(victim)
	if before != UnansweredProbes {
		t.Fatalf("%d packets before the answer", before)
	}
	p.Nonce[0] = 99
	s := New(p, c, lim)
	s.Handle(c, victim, wire.AppendProbe(nil, wire.Probe{Nonce: p.Nonce, From: p.Peer, To: p.Self}))
	attempts(t, 2, p, c, lim)
	if c.count(victim)-before < 2*2 {
		t.Fatalf("an address that answered got %d more packets in 2 attempts", c.count(victim)-before)
	}
}

// When this side cannot use the observed address, every candidate is
// budgeted and no many-port probing aims at them.
func TestUnvouchedCandidatesAreAllBudgetedAndNeverSprayed(t *testing.T) {
	c := &countConn{sent: map[netip.AddrPort]int{}}
	lim := fast
	lim.Budget = NewBudget()
	p := budgetParams()
	p.PeerAddrs = []netip.AddrPort{victim}
	p.Unvouched = true
	p.PeerNAT = wire.NATHard // would call for random-port probes
	attempts(t, 5, p, c, lim)
	total := 0
	for _, n := range c.sent {
		total += n
	}
	if c.count(victim) != UnansweredProbes || total != UnansweredProbes {
		t.Fatalf("%d packets to the candidate, %d in all; want %d", c.count(victim), total, UnansweredProbes)
	}
	p.SelfNAT, p.PeerNAT = wire.NATHard, wire.NATEasy
	if New(p, c, lim).WantsSpray() != 0 {
		t.Fatal("spray sockets toward an unvouched address")
	}
}

func TestBudgetWindowsEndAndItsMemoryIsBounded(t *testing.T) {
	b := NewBudget()
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	for range UnansweredProbes {
		if !b.take(victim) {
			t.Fatal("refused within the budget")
		}
	}
	if b.take(victim) {
		t.Fatal("one packet over the budget")
	}
	now = now.Add(BudgetWindow)
	if !b.take(victim) {
		t.Fatal("still refused after the window")
	}
	for i := range budgetEntries {
		b.take(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1))
	}
	if len(b.entries) != budgetEntries {
		t.Fatalf("%d entries", len(b.entries))
	}
	if b.take(netip.MustParseAddrPort("192.0.2.1:1")) {
		t.Fatal("a new address was given budget while the table is full of live entries")
	}
	now = now.Add(BudgetWindow)
	if !b.take(netip.MustParseAddrPort("192.0.2.1:1")) || len(b.entries) > 1 {
		t.Fatalf("expired entries were not evicted: %d left", len(b.entries))
	}
}
