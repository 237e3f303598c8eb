package relay_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/relay"
)

// rawPayload is an inner packet that quic-go at the receiver hands to
// ReadNonQUICPacket: its first byte has neither of QUIC's two top bits.
func rawPayload(seq uint32) []byte {
	return []byte{0x00, byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq)}
}

// rawArrival is a raw frame that reached a client.
type rawArrival struct {
	from identity.ID
	seq  uint32
	at   time.Time
}

// readRaw reads the raw frames reaching rc until the test ends.
func readRaw(t *testing.T, ctx context.Context, rc *relayClient) <-chan rawArrival {
	t.Helper()
	out := make(chan rawArrival, 4096)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		b := make([]byte, 2048)
		for {
			n, from, err := rc.tr.ReadNonQUICPacket(ctx, b)
			if err != nil {
				return
			}
			a, ok := rc.conn.Resolve(from)
			if !ok || n != 5 {
				continue
			}
			select {
			case out <- rawArrival{from: a.Peer, seq: uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4]), at: time.Now()}:
			default:
			}
		}
	}()
	return out
}

// A client the relay admits for one endpoint cannot reach the clients of
// another: its frames naming them are dropped and counted, while the
// authorized pair's frames go through.
func TestRelayDropsFramesBetweenClientsOfDifferentEndpoints(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ru := udp(t)
	relayID, _ := identity.New("relay")
	srv := startRelay(t, relay.Config{Identity: relayID, Conn: ru})
	relayAddr := ru.LocalAddr().(*net.UDPAddr).AddrPort()
	a, b, c := twoEndpoints(t, ctx, srv, relayID, relayAddr)
	atA, atB := readRaw(t, ctx, a), readRaw(t, ctx, b)
	send := func(from, to *relayClient, seq uint32) {
		t.Helper()
		if _, err := from.conn.WriteTo(rawPayload(seq), from.conn.PeerAddr(relayAddr, to.id.ID)); err != nil {
			t.Fatal(err)
		}
	}

	// quic-go queues non-QUIC packets only once ReadNonQUICPacket runs.
	warm := uint32(1 << 31)
	for {
		send(a, b, warm)
		select {
		case <-atB:
		case <-time.After(10 * time.Millisecond):
			continue
		case <-ctx.Done():
			t.Fatal("no frame from a reached b")
		}
		break
	}
	time.Sleep(20 * time.Millisecond) // let stragglers of the warm-up land
	for len(atB) > 0 {
		<-atB
	}

	before := srv.Status()
	const n = 20
	for i := range uint32(n) {
		send(c, b, i) // c is not a source of b's endpoint...
		send(c, a, i) // ...nor a destination of a's
		send(a, b, 1000+i)
	}
	// a's frames are the positive control: once all arrived, c's had
	// their chance (they were sent before them).
	for i := range uint32(n) {
		select {
		case got := <-atB:
			if got.from != a.id.ID || got.seq != 1000+i {
				t.Fatalf("b got frame %d from %s, want %d from a", got.seq, got.from.Short(), 1000+i)
			}
		case <-ctx.Done():
			t.Fatalf("b got %d of a's %d frames", i, n)
		}
	}
	select {
	case got := <-atA:
		t.Fatalf("a got frame %d from %s", got.seq, got.from.Short())
	case <-time.After(100 * time.Millisecond):
	}
	after := srv.Status()
	if dropped := after.Dropped - before.Dropped; dropped != 2*n {
		t.Fatalf("relay dropped %d frames, want %d (c's)", dropped, 2*n)
	}
	if d := after.DroppedBy[relay.DropUnauthorized] - before.DroppedBy[relay.DropUnauthorized]; d != 2*n {
		t.Fatalf("relay counted %d of c's %d frames as an unauthorized pair (%v)", d, 2*n, after.DroppedBy)
	}
	if fwd := after.Packets - before.Packets; fwd != n {
		t.Fatalf("relay forwarded %d frames, want %d (a's)", fwd, n)
	}
}
