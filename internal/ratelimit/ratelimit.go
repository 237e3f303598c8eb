// Package ratelimit bounds what events from one sender may cost: a token
// bucket per key (a source address, a client's ID), in a table of bounded
// size, so that a server never serves one sender (real or forged) faster
// than a set rate.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"
)

// Keyed is a token bucket per key. It is safe for concurrent use.
type Keyed[K comparable] struct {
	rate  float64 // tokens per second
	burst float64
	max   int // keys tracked at most

	mu      sync.Mutex
	buckets map[K]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewKeyed allows each key burst events at once and rate per second after
// that, tracking at most max keys.
func NewKeyed[K comparable](rate float64, burst, max int) *Keyed[K] {
	l := &Keyed[K]{}
	l.init(rate, burst, max)
	return l
}

func (l *Keyed[K]) init(rate float64, burst, max int) {
	l.rate, l.burst, l.max, l.buckets = rate, float64(burst), max, map[K]*bucket{}
}

// Allow reports whether k may have one more event at now.
func (l *Keyed[K]) Allow(k K, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= l.max && !l.evictLocked(now) {
			// Every tracked key is busy: a flood from many (likely
			// forged) senders. Newcomers wait; none is served freely.
			return false
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[k] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evictLocked forgets the keys whose bucket has refilled: they are back
// where a new key starts. It reports whether room was made.
func (l *Keyed[K]) evictLocked(now time.Time) bool {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, k)
		}
	}
	return len(l.buckets) < l.max
}

// PerSource is a bucket per source address; an IPv4-mapped IPv6 address
// counts as its IPv4 address.
type PerSource struct{ Keyed[netip.Addr] }

// New allows each source burst events at once and rate per second after
// that, tracking at most max sources.
func New(rate float64, burst, max int) *PerSource {
	l := &PerSource{}
	l.init(rate, burst, max)
	return l
}

// Allow reports whether src may have one more event at now.
func (l *PerSource) Allow(src netip.Addr, now time.Time) bool {
	return l.Keyed.Allow(src.Unmap(), now)
}

// Reflect is the limit every server puts on reflect answers: enough for
// the clients behind one address (a carrier NAT shares one among many)
// to learn their mappings, too little to make a server a useful reflector
// toward anyone.
func Reflect() *PerSource { return New(20, 40, 65536) }
