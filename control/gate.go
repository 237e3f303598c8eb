package control

import (
	"net/netip"
	"sync"
	"time"

	"github.com/connetd/connetd/internal/ratelimit"
)

// Before a connection has shown a valid token it holds memory on nothing
// but its word: these bound how many such connections one address, and
// everyone together, may hold at once. A client needs one; a NAT shared by
// many clients that start together needs a few.
const (
	maxUnauthPerAddr = 16
	maxUnauthTotal   = 1024
)

// gate counts connections that have not authenticated yet.
type gate struct {
	mu      sync.Mutex
	perAddr map[netip.Addr]int
	total   int
	// logs limits the log lines refusals cause per address: a flood of
	// bad tokens or connections must not flood the journal too.
	logs *ratelimit.PerSource
}

func newGate() *gate {
	return &gate{perAddr: map[netip.Addr]int{}, logs: ratelimit.New(0.1, 3, 4096)}
}

// enter admits one more unauthenticated connection from a, if there is room.
func (g *gate) enter(a netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.total >= maxUnauthTotal || g.perAddr[a] >= maxUnauthPerAddr {
		return false
	}
	g.perAddr[a]++
	g.total++
	return true
}

// leave ends one connection's time as unauthenticated (it authenticated,
// or it ended).
func (g *gate) leave(a netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perAddr[a]--; g.perAddr[a] <= 0 {
		delete(g.perAddr, a)
	}
	g.total--
}

// shouldLog reports whether a refusal of a's connection may be logged now.
func (g *gate) shouldLog(a netip.Addr) bool { return g.logs.Allow(a, time.Now()) }
