package service

import (
	"log/slog"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/daemon"
	"github.com/connetd/connetd/dbusapi"
)

// FlowMoved is signalled once per move the status lists, on the object of
// the endpoint the flow belongs to, and not for moves made before the
// service first looked (they are in status, not news).
func TestFlowMovedSignalsEachMoveOnce(t *testing.T) {
	bus := startBus(t)
	srvConn, watch := connect(t, bus), connect(t, bus)
	s := &Server{conn: srvConn, log: slog.Default(), endpoints: map[dbus.ObjectPath]*endpointObject{}}
	ep := daemon.Endpoint{Kind: "source", Name: "svc"}
	path := dbusapi.EndpointPath(ep.Kind, ep.Name)
	obj, err := s.exportEndpoint(path, ep, endpointValues(ep, nil))
	if err != nil {
		t.Fatal(err)
	}
	s.endpoints[path] = obj
	if err := watch.AddMatchSignal(dbus.WithMatchInterface(dbusapi.EndpointIface), dbus.WithMatchMember("FlowMoved")); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *dbus.Signal, 16)
	watch.Signal(sigs)

	move := func(seq int64, kind, endpoint, old, new string, stall int64) client.FlowMove {
		return client.FlowMove{Seq: seq, Kind: kind, Endpoint: endpoint, Peer: "peer1", Old: old, New: new, StallMS: stall}
	}
	st := &client.Status{}
	st.FlowMoves.Recent = []client.FlowMove{move(1, "source", "svc", "relay", "direct", 3)}
	s.signalMoves(st) // before the service looked: not signalled
	st.FlowMoves.Recent = append(st.FlowMoves.Recent,
		move(2, "source", "svc", "direct", "relay", 812),
		move(3, "destination", "other", "direct", "relay", 5), // no object: not signalled
		move(4, "source", "svc", "relay", "direct", 7))
	s.signalMoves(st)
	s.signalMoves(st) // nothing new
	want := [][]any{{"peer1", "direct", "relay", uint64(812)}, {"peer1", "relay", "direct", uint64(7)}}
	for i, w := range want {
		select {
		case sig := <-sigs:
			if sig.Path != path || len(sig.Body) != 4 || sig.Body[0] != w[0] || sig.Body[1] != w[1] || sig.Body[2] != w[2] || sig.Body[3] != w[3] {
				t.Fatalf("signal %d: %s %v, want %s %v", i, sig.Path, sig.Body, path, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("signal %d (%v) never came", i, w)
		}
	}
	select {
	case sig := <-sigs:
		t.Fatalf("extra signal %s %v", sig.Path, sig.Body)
	case <-time.After(300 * time.Millisecond):
	}
}
