package replay

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// fill commits data through Space, as a TCP reader would.
func fill(t *testing.T, b *Buffer, data []byte) int {
	t.Helper()
	done := 0
	for done < len(data) {
		s := b.Space()
		if s == nil {
			return done
		}
		n := copy(s, data[done:])
		b.Commit(n)
		done += n
	}
	return done
}

// read returns the bytes from offset from to End, through Slice.
func read(b *Buffer, from uint64) []byte {
	var out []byte
	for from < b.End() {
		s := b.Slice(from, 1000)
		out = append(out, s...)
		from += uint64(len(s))
	}
	return out
}

func TestReplayFromAnyUnackedOffset(t *testing.T) {
	data := make([]byte, 3*LargeChunk)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	b := New(len(data))
	defer b.Free()
	if n := fill(t, b, data); n != len(data) {
		t.Fatalf("filled %d of %d", n, len(data))
	}
	for _, from := range []uint64{0, 1, SmallChunk - 1, SmallChunk, SmallChunk + LargeChunk + 17, uint64(len(data))} {
		if got := read(b, from); !bytes.Equal(got, data[from:]) {
			t.Fatalf("replay from %d: %d bytes, differ from the %d sent", from, len(got), len(data)-int(from))
		}
	}
	// Confirmed bytes go back to the pool; the rest can still be resent.
	ack := uint64(SmallChunk + LargeChunk + 100)
	if err := b.Ack(ack); err != nil {
		t.Fatal(err)
	}
	held := b.Held()
	b.Release(ack)
	if b.Held() >= held {
		t.Fatalf("release kept %d of %d bytes", b.Held(), held)
	}
	if got := read(b, ack); !bytes.Equal(got, data[ack:]) {
		t.Fatal("bytes after the ack changed by the release")
	}
}

func TestLimitHoldsBackTheReader(t *testing.T) {
	b := New(10 << 10)
	defer b.Free()
	data := bytes.Repeat([]byte{7}, 64<<10)
	if n := fill(t, b, data); n != 10<<10 {
		t.Fatalf("filled %d bytes with a limit of %d", n, 10<<10)
	}
	if err := b.Ack(4 << 10); err != nil {
		t.Fatal(err)
	}
	if n := fill(t, b, data); n != 4<<10 {
		t.Fatalf("after acking 4 KiB, %d more bytes went in", n)
	}
	if b.Unacked() != 10<<10 {
		t.Fatalf("unacked %d", b.Unacked())
	}
}

func TestAckBeyondEndIsRefused(t *testing.T) {
	b := New(1 << 20)
	defer b.Free()
	fill(t, b, []byte("hello"))
	if err := b.Ack(6); !errors.Is(err, ErrBeyondEnd) {
		t.Fatalf("ack past the end: %v", err)
	}
	if err := b.Ack(3); err != nil || b.Acked() != 3 {
		t.Fatalf("ack 3: %v, acked %d", err, b.Acked())
	}
	if err := b.Ack(1); err != nil || b.Acked() != 3 {
		t.Fatalf("an older ack moved acked back: %v, %d", err, b.Acked())
	}
}

// An idle flow costs one small chunk, even after all was confirmed.
func TestIdleFlowKeepsOneSmallChunk(t *testing.T) {
	b := New(1 << 20)
	defer b.Free()
	fill(t, b, []byte("ls -l\n"))
	_ = b.Ack(b.End())
	b.Release(b.End())
	if b.Held() != SmallChunk {
		t.Fatalf("idle flow holds %d bytes", b.Held())
	}
}

// A release must not give back a chunk a write may still read from.
func TestReleaseKeepsChunksOfAWriteInProgress(t *testing.T) {
	b := New(1 << 20)
	defer b.Free()
	data := bytes.Repeat([]byte("abcdefgh"), (SmallChunk+LargeChunk)/8+100)
	fill(t, b, data)
	held := b.Held()
	inFlight := b.Slice(10, 5) // a write of these bytes is still going on
	_ = b.Ack(b.End())
	b.Release(10)
	if b.Held() != held || !bytes.Equal(inFlight, data[10:15]) {
		t.Fatalf("chunk of a write in progress released: held %d of %d, %q", b.Held(), held, inFlight)
	}
	b.Release(b.End())
	if b.Held() != LargeChunk {
		t.Fatalf("after the write, %d bytes held, want the last chunk only", b.Held())
	}
}
