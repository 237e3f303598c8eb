package relayconn

import (
	"math/bits"
	"sync/atomic"
)

// BatchBuckets are the upper bounds of BatchSizes' buckets: datagrams per
// read. How full the reads are is what the relay's CPU per byte follows
// (one wakeup and one recvmmsg per read), so it is worth a metric; the
// count is one atomic add per read, not per datagram.
var BatchBuckets = []int{1, 2, 4, 8, 16, 32, 64, 128, 256}

// BatchSizes counts reads by how many datagrams they returned.
type BatchSizes struct {
	counts [10]atomic.Int64 // one per bucket, and one above the last
	sum    atomic.Int64
}

func (b *BatchSizes) add(n int) {
	if n <= 0 {
		return
	}
	i := bits.Len(uint(n - 1)) // 1→0, 2→1, 3-4→2, 5-8→3, …
	b.counts[min(i, len(b.counts)-1)].Add(1)
	b.sum.Add(int64(n))
}

// Snapshot returns the count of reads in each bucket (the last one: more
// than the last bound) and the datagrams of all reads.
func (b *BatchSizes) Snapshot() (counts []int64, datagrams int64) {
	counts = make([]int64, len(b.counts))
	for i := range b.counts {
		counts[i] = b.counts[i].Load()
	}
	return counts, b.sum.Load()
}
