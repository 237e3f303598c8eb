package relay_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/wire"
)

// window is the length of plaintext the relay must never see.
const window = 64

// plaintextFinder finds any window-byte run of a pattern in other bytes.
// It indexes the pattern's window-aligned blocks by their first 8 bytes:
// any run of 2*window-1 pattern bytes contains a whole aligned block.
type plaintextFinder struct {
	pattern []byte
	blocks  map[uint64]int
}

func newPlaintextFinder(pattern []byte) *plaintextFinder {
	f := &plaintextFinder{pattern: pattern, blocks: map[uint64]int{}}
	for off := 0; off+window <= len(pattern); off += window {
		f.blocks[binary.LittleEndian.Uint64(pattern[off:])] = off
	}
	return f
}

// find returns the offset in b of a pattern block, or -1.
func (f *plaintextFinder) find(b []byte) int {
	for i := 0; i+window <= len(b); i++ {
		if off, ok := f.blocks[binary.LittleEndian.Uint64(b[i:])]; ok && bytes.Equal(b[i:i+window], f.pattern[off:off+window]) {
			return i
		}
	}
	return -1
}

// What the relay forwards is the peers' ciphertext: a known 1 MiB pattern
// sent through a relayed QUIC stream never shows in the frames it handled.
func TestRelayNeverSeesPlaintext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pattern := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{'c', 'o', 'n', 'n', 'e', 't', 'd'})
	_, _ = rng.Read(pattern)
	find := newPlaintextFinder(pattern)

	var mu sync.Mutex
	var seen [][]byte // each frame, copied: the relay reuses its buffers
	var seenBytes int
	ru := udp(t)
	relayID, _ := identity.New("relay")
	srv := startRelay(t, relay.Config{Identity: relayID, Conn: ru, ObserveForwarded: func(frame []byte) {
		mu.Lock()
		seen = append(seen, append([]byte(nil), frame...))
		seenBytes += len(frame)
		mu.Unlock()
	}})
	a, b := newRelayClient(t), newRelayClient(t)
	srv.SetAuth(&wire.RelayAuth{Endpoints: []wire.RelayEndpoint{
		{Endpoint: "e", Sources: []identity.ID{a.id.ID}, Destinations: []identity.ID{b.id.ID}},
	}})
	relayAddr := ru.LocalAddr().(*net.UDPAddr).AddrPort()
	a.link(t, ctx, relayID, relayAddr)
	b.link(t, ctx, relayID, relayAddr)
	serveEcho(t, ctx, b)

	conn, err := dialPeer(ctx, a, net.UDPAddrFromAddrPort(relayAddr), b.id.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = st.Write(pattern)
		_ = st.Close()
	})
	_ = st.SetReadDeadline(time.Now().Add(20 * time.Second))
	echoed, err := io.ReadAll(st)
	wg.Wait()
	if err != nil || !bytes.Equal(echoed, pattern) {
		t.Fatalf("echo through the relay: %d of %d bytes, %v", len(echoed), len(pattern), err)
	}

	// UDP flows' datagrams travel in the same connection, as DATAGRAM
	// frames: send pieces of the pattern that way too, and wait until
	// the relay has forwarded at least their bytes.
	mu.Lock()
	before := seenBytes
	mu.Unlock()
	const datagrams, piece = 300, 1000
	for i := range datagrams {
		if err := conn.SendDatagram(pattern[i*piece : (i+1)*piece]); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := seenBytes - before
		mu.Unlock()
		if n >= datagrams*piece {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay forwarded %d bytes after %d datagrams of %d bytes", n, datagrams, piece)
		}
	}

	if find.find(pattern[1000:3000]) < 0 {
		t.Fatal("the finder misses plaintext; the check below would prove nothing")
	}
	mu.Lock()
	defer mu.Unlock()
	if seenBytes < 2*len(pattern) {
		t.Fatalf("the relay handled %d bytes; the pattern crossed it twice (%d bytes)", seenBytes, 2*len(pattern))
	}
	for i, f := range seen {
		if off := find.find(f); off >= 0 {
			t.Fatalf("frame %d carries plaintext at offset %d", i, off)
		}
	}
}
