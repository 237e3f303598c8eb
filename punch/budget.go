package punch

import (
	"net/netip"
	"sync"
	"time"
)

// Candidates other than the peer's observed address are the peer's own
// word (control only filters them by kind, docs/protocol.md §8), so a
// client could name a third party's address and have its peers probe it.
// A Budget bounds that across attempts: an address that has never answered
// a probe gets at most UnansweredProbes packets per BudgetWindow from this
// client, whatever number of attempts name it.
const (
	UnansweredProbes = 20 // two attempts' worth: one open and nine pings each
	BudgetWindow     = 10 * time.Minute
	// budgetEntries bounds the memory of a Budget. When it is full of
	// addresses still within their window, new addresses get nothing: a
	// client naming that many silent addresses is not a peer to help.
	budgetEntries = 4096
)

// Budget counts probes to addresses that have not answered. It is shared by
// every attempt of one client and safe for concurrent use.
type Budget struct {
	mu      sync.Mutex
	now     func() time.Time
	entries map[netip.AddrPort]*budgetEntry
}

type budgetEntry struct {
	sent     int
	since    time.Time
	answered bool
}

// NewBudget returns an empty budget.
func NewBudget() *Budget {
	return &Budget{now: time.Now, entries: map[netip.AddrPort]*budgetEntry{}}
}

// take reports whether one more probe may go to a, and counts it.
func (b *Budget) take(a netip.AddrPort) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	e := b.entries[a]
	if e != nil && !e.answered && now.Sub(e.since) >= BudgetWindow {
		e.sent, e.since = 0, now
	}
	if e == nil {
		if len(b.entries) >= budgetEntries && !b.evictLocked(now) {
			return false
		}
		e = &budgetEntry{since: now}
		b.entries[a] = e
	}
	if e.answered {
		return true
	}
	if e.sent >= UnansweredProbes {
		return false
	}
	e.sent++
	return true
}

// answered records that a probe of an attempt came from a: the address is
// a peer's, and probing it is no longer limited.
func (b *Budget) answered(a netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.entries[a]; e != nil {
		e.answered = true
		return
	}
	if len(b.entries) < budgetEntries || b.evictLocked(b.now()) {
		b.entries[a] = &budgetEntry{answered: true, since: b.now()}
	}
}

// evictLocked drops entries whose window is over (answered ones too: they
// are relearned on the next answer), and reports whether room was made.
func (b *Budget) evictLocked(now time.Time) bool {
	for a, e := range b.entries {
		if now.Sub(e.since) >= BudgetWindow {
			delete(b.entries, a)
		}
	}
	return len(b.entries) < budgetEntries
}
