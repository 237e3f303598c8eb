package backoff

import (
	"context"
	"testing"
	"time"
)

const (
	lo = 100 * time.Millisecond
	hi = time.Second
)

// steps are the un-jittered delays of New(lo, hi): doubling from lo,
// capped at hi.
var steps = []time.Duration{lo, 2 * lo, 4 * lo, 8 * lo, hi, hi, hi, hi, hi, hi, hi, hi}

func TestDelaysStayInWindow(t *testing.T) {
	const trials = 300
	maxSeen := make([]time.Duration, len(steps))
	minSeen := make([]time.Duration, len(steps))
	for range trials {
		b := New(lo, hi)
		for i, s := range steps {
			d := b.Next()
			if d < s/2 || d > s {
				t.Fatalf("delay %d = %v, want within [%v, %v]", i, d, s/2, s)
			}
			if d > maxSeen[i] {
				maxSeen[i] = d
			}
			if minSeen[i] == 0 || d < minSeen[i] {
				minSeen[i] = d
			}
		}
	}
	for i := 1; i < len(steps); i++ {
		// Growth: while below the cap, step i reaches delays step i-1
		// never can.
		if steps[i] > steps[i-1] && maxSeen[i] <= steps[i-1] {
			t.Errorf("step %d never exceeded %v (max %v): delays do not grow", i, steps[i-1], maxSeen[i])
		}
	}
	for i, s := range steps {
		// Jitter: over many trials the delays spread over the window.
		if maxSeen[i]-minSeen[i] < s/4 {
			t.Errorf("step %d: delays span only %v..%v", i, minSeen[i], maxSeen[i])
		}
	}
	if maxSeen[len(steps)-1] > hi {
		t.Errorf("capped delay %v above max %v", maxSeen[len(steps)-1], hi)
	}
}

func TestReset(t *testing.T) {
	for range 100 {
		b := New(lo, hi)
		for range 6 {
			b.Next()
		}
		b.Reset()
		if d := b.Next(); d < lo/2 || d > lo {
			t.Fatalf("after Reset: %v, want within [%v, %v]", d, lo/2, lo)
		}
		if d := b.Next(); d < lo || d > 2*lo {
			t.Fatalf("second after Reset: %v, want within [%v, %v]", d, lo, 2*lo)
		}
	}
}

func TestMinAboveMax(t *testing.T) {
	b := New(hi, lo)
	b.Next()
	for range 5 {
		if d := b.Next(); d > lo {
			t.Fatalf("delay %v above max %v", d, lo)
		}
	}
}

func TestSleep(t *testing.T) {
	b := New(2*time.Millisecond, 4*time.Millisecond)
	start := time.Now()
	if !b.Sleep(context.Background()) {
		t.Fatal("Sleep = false with a live context")
	}
	if el := time.Since(start); el < time.Millisecond {
		t.Fatalf("Sleep returned after %v, before its delay", el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	long := New(time.Hour, time.Hour)
	start = time.Now()
	if long.Sleep(ctx) {
		t.Fatal("Sleep = true with a canceled context")
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("canceled Sleep took %v", el)
	}
}
