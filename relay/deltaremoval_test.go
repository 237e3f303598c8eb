package relay_test

import (
	"bytes"
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/internal/syncbuf"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

// A pair control no longer authorizes, because its source withdrew or
// disconnected, reaches the relay as a removal in a delta (the link's only
// reset is its first batch), and the relay stops forwarding its frames
// while the pair that stays goes on.
func TestRelayStopsForwardingPairsControlRemoved(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var rec syncbuf.Buffer
	l := startLinked(t, ctx, control.Limits{}, &rec)

	// kept: a→b; withdrawn: c→d, c withdraws; gone: e→f, e disconnects.
	names := []string{"kept", "withdrawn", "gone"}
	var srcs, dsts []*relayClient
	var srcSessions []*ctlSession
	for _, name := range names {
		src, dst := newRelayClient(t), newRelayClient(t)
		ss, ds := l.join(t, ctx, src.id), l.join(t, ctx, dst.id)
		ss.send(t, &wire.Announce{Endpoint: name, Role: restrict.RoleSource, Route: wire.RouteRelay})
		ds.send(t, &wire.Announce{Endpoint: name, Role: restrict.RoleDestination, Route: wire.RouteRelay})
		srcs, dsts, srcSessions = append(srcs, src), append(dsts, dst), append(srcSessions, ss)
	}
	l.waitRelay(t, ctx, "authorized the three pairs", func(m map[string]int) bool { return len(m) == 3 })
	var arrivals []<-chan rawArrival
	for i := range names {
		srcs[i].link(t, ctx, l.relayID, l.relayAddr)
		dsts[i].link(t, ctx, l.relayID, l.relayAddr)
		arrivals = append(arrivals, readRaw(t, ctx, dsts[i]))
		pairFlows(t, ctx, l, srcs[i], dsts[i], arrivals[i])
	}

	srcSessions[1].send(t, &wire.Withdraw{Endpoint: "withdrawn", Role: restrict.RoleSource})
	_ = srcSessions[2].conn.CloseWithError(0, "")
	l.waitRelay(t, ctx, "dropped the withdrawn and the gone pair", func(m map[string]int) bool {
		return len(m) == 1 && m["kept"] == 1
	})
	time.Sleep(20 * time.Millisecond) // let stragglers of the flows above land
	for _, ch := range arrivals {
		for len(ch) > 0 {
			<-ch
		}
	}
	before := l.relay.Status()
	const n = 20
	for seq := range uint32(n) {
		for i := range names {
			if _, err := srcs[i].conn.WriteTo(rawPayload(seq), srcs[i].conn.PeerAddr(l.relayAddr, dsts[i].id.ID)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The kept pair's frames were sent after the others': once they are
	// all in, the others had their chance.
	for i := range n {
		select {
		case <-arrivals[0]:
		case <-ctx.Done():
			t.Fatalf("the kept pair got %d of %d frames", i, n)
		}
	}
	for i, name := range names[1:] {
		select {
		case got := <-arrivals[i+1]:
			t.Fatalf("the relay still forwards the %s pair: frame %d", name, got.seq)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if dropped := l.relay.Status().Dropped - before.Dropped; dropped != 2*n {
		t.Fatalf("the relay dropped %d frames, want %d", dropped, 2*n)
	}

	// What control sent: one reset, first; the removals came as deltas.
	r := bytes.NewReader([]byte(rec.String()))
	var removed []string
	for i := 0; ; i++ {
		m, err := wire.Read(r, wire.ControlToRelay)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("message %d on the link: %v", i, err)
		}
		d, ok := m.(*wire.RelayAuthDelta) // the welcome was read before recording began
		if !ok {
			t.Fatalf("message %d on the link is a %s", i, wire.Kind(m))
		}
		if d.Reset != (i == 0) {
			t.Fatalf("message %d on the link: reset = %v", i, d.Reset)
		}
		removed = append(removed, d.Remove...)
	}
	slices.Sort(removed)
	if !slices.Equal(removed, []string{"gone", "withdrawn"}) {
		t.Fatalf("control removed %v from the relay's table, want gone and withdrawn", removed)
	}
	if n := l.dials.Load(); n != 1 {
		t.Fatalf("the relay dialed control %d times, want once", n)
	}
}
