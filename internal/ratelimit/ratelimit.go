// Package ratelimit bounds what datagrams from unauthenticated senders may
// cost: a token bucket per source address, in a table of bounded size, so
// that a server never answers one address (real or forged) faster than a
// set rate.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"
)

// PerSource is safe for concurrent use.
type PerSource struct {
	rate  float64 // tokens per second
	burst float64
	max   int // sources tracked at most

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New allows each source burst events at once and rate per second after
// that, tracking at most max sources.
func New(rate float64, burst, max int) *PerSource {
	return &PerSource{rate: rate, burst: float64(burst), max: max, buckets: map[netip.Addr]*bucket{}}
}

// Allow reports whether src may have one more event at now.
func (l *PerSource) Allow(src netip.Addr, now time.Time) bool {
	src = src.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[src]
	if b == nil {
		if len(l.buckets) >= l.max && !l.evictLocked(now) {
			// Every tracked source is busy: a flood from many (likely
			// forged) addresses. Newcomers wait; none is answered freely.
			return false
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[src] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evictLocked forgets the sources whose bucket has refilled: they are back
// where a new source starts. It reports whether room was made.
func (l *PerSource) evictLocked(now time.Time) bool {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for a, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, a)
		}
	}
	return len(l.buckets) < l.max
}

// Reflect is the limit every server puts on reflect answers: enough for
// the clients behind one address (a carrier NAT shares one among many)
// to learn their mappings, too little to make a server a useful reflector
// toward anyone.
func Reflect() *PerSource { return New(20, 40, 65536) }
