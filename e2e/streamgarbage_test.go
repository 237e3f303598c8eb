package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/wire"
)

// Garbage on an authenticated client's control stream (a frame that is not
// a message, then one longer than the link allows) ends that client's
// connection, with a protocol error, and nobody else's.
func TestGarbageOnAControlStreamEndsThatSessionOnly(t *testing.T) {
	tp := newTopology(t)
	tp.startServer(t)
	for name, frame := range map[string][]byte{
		"not json":  append(binary.BigEndian.AppendUint32(nil, 5), "{{{{{"...),
		"unknown":   append(binary.BigEndian.AppendUint32(nil, 13), `{"nope":{}}  `...),
		"too large": binary.BigEndian.AppendUint32(nil, wire.MaxSmallFrame+1),
	} {
		t.Run(name, func(t *testing.T) {
			bad := dialRaw(t, tp, "client-d-token")
			good := dialRaw(t, tp, "client-s-token")
			if _, err := bad.st.Write(frame); err != nil {
				t.Fatal(err)
			}
			select {
			case <-bad.conn.Context().Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the server kept a connection that sent garbage")
			}
			var aerr *quic.ApplicationError
			if err := context.Cause(bad.conn.Context()); !errors.As(err, &aerr) || aerr.ErrorCode != wire.ConnProtocol {
				t.Fatalf("connection closed with %v, want ConnProtocol", err)
			}
			good.send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: wire.RouteAny})
			for {
				if p, ok := good.read(t).(*wire.Peers); ok && p.Endpoint == "svc" {
					break
				}
			}
		})
	}
	select {
	case <-tp.server.done:
		t.Fatalf("the server exited: %v", tp.server.err)
	default:
	}
}
