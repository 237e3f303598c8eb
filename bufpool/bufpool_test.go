package bufpool

import "testing"

// A Reader stays small until a read fills it, then stays large.
func TestReaderGrowsOnAFullRead(t *testing.T) {
	r := NewReader()
	defer r.Release()
	steps := []struct{ n, want int }{{0, Small}, {Small - 1, Small}, {Small, Large}, {Large, Large}, {1, Large}}
	for _, s := range steps {
		r.Read(s.n)
		if got := len(r.Buf()); got != s.want {
			t.Fatalf("after a read of %d: buffer %d, want %d", s.n, got, s.want)
		}
	}
}

// Put sorts buffers back by size: Get(large) never hands out a small one.
func TestPutKeepsSizesApart(t *testing.T) {
	Put(Get(false))
	for range 10 {
		b := Get(true)
		if len(*b) != Large {
			t.Fatalf("Get(true) gave %d bytes", len(*b))
		}
		Put(b)
	}
}
