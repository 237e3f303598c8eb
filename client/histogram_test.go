package client

import (
	"reflect"
	"testing"
	"time"
)

func TestHistogramBucketsAreCumulative(t *testing.T) {
	h := newHistogram([]float64{1, 5})
	for _, d := range []time.Duration{500 * time.Millisecond, time.Second, 3 * time.Second, time.Minute} {
		h.observe(d)
	}
	want := Histogram{Bounds: []float64{1, 5}, Buckets: []uint64{2, 3}, Count: 4, Sum: 64.5}
	if got := h.status(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
