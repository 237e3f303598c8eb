package client

import (
	"sync"
	"time"
)

// timeToDirectBounds are the upper bounds, in seconds, of the time-to-
// direct buckets: a punch between easy NATs takes well under a second, a
// many-port one a few seconds, and retries after failures back off to
// half a minute, so the buckets reach to minutes.
var timeToDirectBounds = []float64{0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300}

// Histogram is a distribution of durations in seconds, as the status
// reports it for metrics: Buckets[i] counts the observations up to
// Bounds[i] (cumulative, as Prometheus wants them); Count and Sum cover
// all observations, those beyond the last bound too.
type Histogram struct {
	Bounds  []float64 `json:"bounds"`
	Buckets []uint64  `json:"buckets"`
	Count   uint64    `json:"count"`
	Sum     float64   `json:"sum"`
}

// histogram collects observations; it is prometheus-free so that the
// client does not depend on metrics being on.
type histogram struct {
	bounds []float64
	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative; one more for beyond the last bound
	sum    float64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(h.bounds) && s > h.bounds[i] {
		i++
	}
	h.mu.Lock()
	h.counts[i]++
	h.sum += s
	h.mu.Unlock()
}

func (h *histogram) status() Histogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := Histogram{Bounds: h.bounds, Buckets: make([]uint64, len(h.bounds)), Sum: h.sum}
	for i, n := range h.counts {
		st.Count += n
		if i < len(h.bounds) {
			st.Buckets[i] = st.Count
		}
	}
	return st
}
