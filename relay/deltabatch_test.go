package relay_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/wire"
)

// pipeControl plays control for srv over in-process pipes: each link the
// relay opens arrives on links.
func pipeControl(t *testing.T, srv *relay.Server) (links <-chan net.Conn) {
	t.Helper()
	ch := make(chan net.Conn, 4)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		_ = srv.RunControl(ctx, func(ctx context.Context) (io.ReadWriteCloser, error) {
			ours, theirs := net.Pipe()
			select {
			case ch <- theirs:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return ours, nil
		})
	})
	return ch
}

func nextLink(t *testing.T, links <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-links:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not link to control")
		return nil
	}
}

func write(t *testing.T, w io.Writer, m wire.Message) {
	t.Helper()
	if err := wire.Write(w, m); err != nil {
		t.Fatal(err)
	}
}

// applied returns once the relay has applied every message written to c
// so far: it blocks reading the next one, which a lone length prefix lets
// it begin. The rest of that message must follow.
func applied(t *testing.T, c net.Conn, next wire.Message) (rest func()) {
	t.Helper()
	var buf writerBuf
	write(t, &buf, next)
	if _, err := c.Write(buf[:4]); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := c.Write(buf[4:]); err != nil {
			t.Fatal(err)
		}
	}
}

type writerBuf []byte

func (w *writerBuf) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }

func entry(name string, src, dst identity.ID) wire.RelayEndpoint {
	return wire.RelayEndpoint{Endpoint: name, Sources: []identity.ID{src}, Destinations: []identity.ID{dst}}
}

func ids(n int) []identity.ID {
	out := make([]identity.ID, n)
	for i := range out {
		binary.BigEndian.PutUint64(out[i][:], uint64(i+1))
	}
	return out
}

// The relay puts a batch in force only with its last message: until then,
// the table of the previous batch stays, however many messages arrived.
// A link's first batch is a reset, and the relay keeps its old table until
// that batch is complete (relayed flows go on while control reconnects); a
// batch the link's end cut short is dropped.
func TestRelayAppliesABatchWhenItIsComplete(t *testing.T) {
	srv := startRelay(t, relay.Config{Conn: udp(t)})
	id := ids(6)
	links := pipeControl(t, srv)
	c := nextLink(t, links)
	write(t, c, &wire.RelayAuthDelta{Reset: true, Set: []wire.RelayEndpoint{entry("a", id[0], id[1])}, More: true})
	rest := applied(t, c, &wire.RelayAuthDelta{Set: []wire.RelayEndpoint{entry("b", id[2], id[3])}})
	if got := relayEndpoints(srv); len(got) != 0 {
		t.Fatalf("half a batch is in force: %v", got)
	}
	rest()
	write(t, c, &wire.RelayAuthDelta{Extend: []wire.RelayEndpoint{{Endpoint: "b", Destinations: []identity.ID{id[4]}}}})
	_ = applied(t, c, &wire.RelayAuthDelta{})
	if got := relayEndpoints(srv); len(got) != 2 || got["a"] != 1 || got["b"] != 2 {
		t.Fatalf("after the batch and an extend the relay has %v, want a with 1 destination, b with 2", got)
	}

	// A new link: its reset batch is cut short, so a and b stay.
	c.Close()
	c = nextLink(t, links)
	write(t, c, &wire.RelayAuthDelta{Reset: true, Set: []wire.RelayEndpoint{entry("c", id[4], id[5])}, More: true})
	c.Close()
	c = nextLink(t, links)
	if got := relayEndpoints(srv); len(got) != 2 || got["a"] != 1 || got["b"] != 2 {
		t.Fatalf("a batch cut short changed the table: %v", got)
	}
	write(t, c, &wire.RelayAuthDelta{Reset: true, Set: []wire.RelayEndpoint{entry("c", id[4], id[5])}, More: true})
	write(t, c, &wire.RelayAuthDelta{Remove: []string{"c"}, Set: []wire.RelayEndpoint{entry("d", id[4], id[5])}})
	_ = applied(t, c, &wire.RelayAuthDelta{})
	if got := relayEndpoints(srv); len(got) != 1 || got["d"] != 1 {
		t.Fatalf("after a reset the relay has %v, want only d", got)
	}
}

// A link whose first message is no reset would mix the table of an
// earlier control with this one's: the relay ends it, and keeps its table.
func TestRelayRefusesALinkThatDoesNotStartWithAReset(t *testing.T) {
	srv := startRelay(t, relay.Config{Conn: udp(t)})
	id := ids(2)
	srv.SetAuth(&wire.RelayAuth{Endpoints: []wire.RelayEndpoint{entry("kept", id[0], id[1])}})
	links := pipeControl(t, srv)
	c := nextLink(t, links)
	write(t, c, &wire.RelayAuthDelta{Remove: []string{"kept"}})
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the link goes on after a first message without reset: %v", err)
	}
	nextLink(t, links)
	if got := relayEndpoints(srv); len(got) != 1 || got["kept"] != 1 {
		t.Fatalf("the refused message changed the table: %v", got)
	}
}

// A table of 20,000 endpoints, in messages of the size control sends,
// takes the relay a time in proportion to it, not to its square: one
// snapshot for the whole batch.
func TestRelayTakesABigTableInOneSnapshot(t *testing.T) {
	const n, perMessage = 20000, 600 // ~370 bytes an entry: ~220 KiB a message
	srv := startRelay(t, relay.Config{Conn: udp(t)})
	id := ids(2 * n)
	c := nextLink(t, pipeControl(t, srv))
	changed := srv.Changed()
	start := time.Now()
	for i := 0; i < n; i += perMessage {
		m := &wire.RelayAuthDelta{Reset: i == 0, More: i+perMessage < n}
		for j := i; j < min(i+perMessage, n); j++ {
			m.Set = append(m.Set, entry(bigName(j), id[2*j], id[2*j+1]))
		}
		write(t, c, m)
		if m.More {
			select {
			case <-changed:
				t.Fatalf("the relay published a table after message %d of a batch", i/perMessage)
			default:
			}
		}
	}
	_ = applied(t, c, &wire.RelayAuthDelta{})
	t.Logf("%d endpoints in %d messages applied in %v", n, (n+perMessage-1)/perMessage, time.Since(start).Round(time.Millisecond))
	if got := relayEndpoints(srv); len(got) != n {
		t.Fatalf("the relay has %d endpoints, want %d", len(got), n)
	}
}
