package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// A destination that stops reading its control stream (2 KiB window) does
// not hold up its source: the source's punch request is answered and its
// session goes on, and the server disconnects the stuck client once its
// queue of messages overflows, saying why.
func TestAClientThatStopsReadingStallsNobodyAndIsDropped(t *testing.T) {
	tp := newTopology(t)
	tp.startServer(t)
	qc := quicconf.Control()
	qc.InitialStreamReceiveWindow, qc.MaxStreamReceiveWindow = 2<<10, 2<<10
	qc.InitialConnectionReceiveWindow, qc.MaxConnectionReceiveWindow = 4<<10, 4<<10
	stuck := dialRawWith(t, tp, "client-d-token", qc)
	src := dialRaw(t, tp, "client-s-token")
	stuck.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: wire.RouteAny})
	src.send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: wire.RouteAny})
	for {
		if p, ok := src.read(t).(*wire.Peers); ok && len(p.Peers) == 1 {
			break
		}
	}
	// Each new candidate list of the source is a peers message for the
	// stuck destination: its window fills and control's writes to it block.
	for i := range 40 {
		c := &wire.Candidates{}
		for j := range 32 {
			c.Direct = append(c.Direct, fmt.Sprintf("[2001:db8::%x:%x]:%d", i, j, 10000+j))
		}
		src.send(t, c)
	}
	time.Sleep(300 * time.Millisecond)

	began := time.Now()
	src.send(t, &wire.PunchRequest{Peer: stuck.id.ID})
	src.send(t, &wire.Announce{Endpoint: "other", Role: "source", Route: wire.RouteAny})
	var punched, announced bool
	for !punched || !announced {
		switch m := src.read(t).(type) {
		case *wire.Punch:
			punched = punched || m.Peer == stuck.id.ID
		case *wire.Peers:
			announced = announced || m.Endpoint == "other"
		}
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Fatalf("the source's session took %v to answer while its peer did not read", d)
	}

	// Peers updates are coalesced, but every refused announce queues an
	// error for its sender: more than the queue holds, and it is dropped.
	for range 600 {
		if err := wire.Write(stuck.st, &wire.Announce{Endpoint: "x", Role: "owner", Route: wire.RouteAny}); err != nil {
			break // the server closed the connection already
		}
	}
	select {
	case <-stuck.conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a client that does not read was kept")
	}
	var aerr *quic.ApplicationError
	if err := context.Cause(stuck.conn.Context()); !errors.As(err, &aerr) || aerr.ErrorCode != wire.ConnProtocol {
		t.Fatalf("connection closed with %v, want ConnProtocol", err)
	}
	tp.server.waitLog(t, "control messages overflowed", 5*time.Second)
	src.send(t, &wire.Announce{Endpoint: "third", Role: "source", Route: wire.RouteAny})
	for {
		if p, ok := src.read(t).(*wire.Peers); ok && p.Endpoint == "third" {
			break
		}
	}
}
