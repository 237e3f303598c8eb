// Package replay holds the bytes a resumable flow has sent and its peer
// has not yet confirmed, so that they can be sent again over another
// stream when the one they went out on dies with its path.
//
// A Buffer is a list of chunks: the first is small, so that the thousands
// of flows that carry a few keystrokes cost little; once a flow fills one,
// its later chunks are large, so that a bulk flow reads from its TCP
// socket in large pieces. Chunks wholly confirmed are given back to a
// pool. Offsets are absolute: byte n of the flow is at offset n, whatever
// chunk holds it.
package replay

import (
	"errors"
	"fmt"

	"github.com/connetd/connetd/bufpool"
)

// Chunk sizes: see the package comment.
const (
	SmallChunk = bufpool.Small
	LargeChunk = bufpool.Large
)

type chunk struct {
	buf   *[]byte
	start uint64 // offset of buf[0]
	n     int    // bytes filled
}

func (c *chunk) end() uint64 { return c.start + uint64(c.n) }

// ErrBeyondEnd is returned by Ack for an offset past what was sent.
var ErrBeyondEnd = errors.New("acknowledged beyond the bytes sent")

// Buffer is not safe for concurrent use, with one exception the flow
// relies on: the slice Space returns may be filled by one goroutine while
// others call the other methods, until Commit.
type Buffer struct {
	limit  int // most unconfirmed bytes held; Space returns nil at it
	chunks []*chunk
	acked  uint64 // bytes the peer confirmed
	end    uint64 // bytes committed
	large  bool   // the flow filled a chunk: take large ones from now on
}

// New returns a buffer that holds at most limit unconfirmed bytes.
func New(limit int) *Buffer { return &Buffer{limit: limit} }

// Acked is how many bytes the peer confirmed.
func (b *Buffer) Acked() uint64 { return b.acked }

// End is how many bytes were committed.
func (b *Buffer) End() uint64 { return b.end }

// Unacked is how many committed bytes the peer has not confirmed.
func (b *Buffer) Unacked() int { return int(b.end - b.acked) }

// Space is where the next bytes go: free room at the end of the last
// chunk, or a new chunk. It is nil when limit bytes wait for confirmation.
func (b *Buffer) Space() []byte {
	room := b.limit - b.Unacked()
	if room <= 0 {
		return nil
	}
	if n := len(b.chunks); n > 0 {
		last := b.chunks[n-1]
		if free := len(*last.buf) - last.n; free > 0 {
			return (*last.buf)[last.n:][:min(free, room)]
		}
		b.large = true
	}
	c := &chunk{start: b.end}
	c.buf = bufpool.Get(b.large)
	b.chunks = append(b.chunks, c)
	return (*c.buf)[:min(len(*c.buf), room)]
}

// Commit adds the first n bytes of the last Space to the buffer.
func (b *Buffer) Commit(n int) {
	if n <= 0 {
		return
	}
	last := b.chunks[len(b.chunks)-1]
	if last.n+n > len(*last.buf) {
		panic(fmt.Sprintf("replay: commit of %d bytes into %d free", n, len(*last.buf)-last.n))
	}
	last.n += n
	b.end += uint64(n)
}

// Slice returns bytes from offset from on, up to max and to the end of
// the chunk that holds from; nil when from is the end. from must lie
// between Acked and End.
func (b *Buffer) Slice(from uint64, max int) []byte {
	if from < b.acked || from > b.end {
		panic(fmt.Sprintf("replay: slice at %d outside [%d, %d]", from, b.acked, b.end))
	}
	for _, c := range b.chunks {
		if from >= c.start && from < c.end() {
			s := (*c.buf)[from-c.start : c.n]
			if len(s) > max {
				s = s[:max]
			}
			return s
		}
	}
	return nil
}

// Ack records that the peer holds every byte before to. An offset at or
// below Acked changes nothing; one past End is the peer's error.
func (b *Buffer) Ack(to uint64) error {
	if to > b.end {
		return fmt.Errorf("%w: %d of %d", ErrBeyondEnd, to, b.end)
	}
	if to > b.acked {
		b.acked = to
	}
	return nil
}

// Release gives back the chunks wholly below both Acked and keep (the
// offset of a write that may still read from a chunk), except the last,
// which Space fills.
func (b *Buffer) Release(keep uint64) {
	limit := min(b.acked, keep)
	i := 0
	for i < len(b.chunks)-1 && b.chunks[i].end() <= limit {
		bufpool.Put(b.chunks[i].buf)
		b.chunks[i] = nil
		i++
	}
	if i > 0 {
		b.chunks = append(b.chunks[:0], b.chunks[i:]...)
	}
}

// Free gives back every chunk; the buffer is not used afterwards.
func (b *Buffer) Free() {
	for _, c := range b.chunks {
		bufpool.Put(c.buf)
	}
	b.chunks = nil
}

// Held is how many bytes of chunks the buffer holds (what it costs in
// memory, as tests check).
func (b *Buffer) Held() int {
	n := 0
	for _, c := range b.chunks {
		n += len(*c.buf)
	}
	return n
}
