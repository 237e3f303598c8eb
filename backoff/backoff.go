// Package backoff spaces out reconnection attempts: exponential growth with
// jitter, capped, reset after a connection that lasted.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields successive delays. The zero value is not usable; use New.
type Backoff struct {
	min, max time.Duration
	next     time.Duration
}

// New returns a backoff from min doubling up to max.
func New(min, max time.Duration) *Backoff {
	return &Backoff{min: min, max: max, next: min}
}

// Next returns the delay before the next attempt: the current step, jittered
// to between 50% and 100% of it so that many clients do not retry in step.
func (b *Backoff) Next() time.Duration {
	d := b.next
	b.next *= 2
	if b.next > b.max {
		b.next = b.max
	}
	return d/2 + rand.N(d/2+1)
}

// Reset starts over at min, after a success.
func (b *Backoff) Reset() { b.next = b.min }

// Sleep waits for Next or until ctx ends; it reports whether to go on.
func (b *Backoff) Sleep(ctx context.Context) bool { return Wait(ctx, b.Next()) }

// Wait waits d; false if ctx ended first.
func Wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
