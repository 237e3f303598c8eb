package relayconn

import (
	"slices"
	"testing"
)

func TestBatchSizesBuckets(t *testing.T) {
	var b BatchSizes
	for _, n := range []int{0, 1, 2, 3, 4, 5, 8, 9, 256, 257, 1000} {
		b.add(n)
	}
	counts, sum := b.Snapshot()
	// ≤1: 1; ≤2: 2; ≤4: 3,4; ≤8: 5,8; ≤16: 9; ≤256: 256; above: 257, 1000.
	want := []int64{1, 1, 2, 2, 1, 0, 0, 0, 1, 2}
	if !slices.Equal(counts, want) || sum != 1+2+3+4+5+8+9+256+257+1000 {
		t.Fatalf("counts %v sum %d, want %v", counts, sum, want)
	}
	if len(counts) != len(BatchBuckets)+1 {
		t.Fatalf("%d buckets for %d bounds", len(counts), len(BatchBuckets))
	}
}
