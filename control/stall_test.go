package control_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// stuckClient joins with a 2 KiB receive window and never reads after the
// welcome: control's stream to it is full after a few messages.
func stuckClient(t *testing.T, s *server, token string) *session {
	t.Helper()
	qc := quicconf.Control()
	qc.InitialStreamReceiveWindow, qc.MaxStreamReceiveWindow = 2<<10, 2<<10
	qc.InitialConnectionReceiveWindow, qc.MaxConnectionReceiveWindow = 4<<10, 4<<10
	sess, m, err := s.dialWith(t, token, qc)
	if err != nil || !isWelcome(m) {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	return sess
}

// manyCandidates is a long candidate list that differs with i, so that
// every one makes a fresh peers message for the client's peers.
func manyCandidates(i int) *wire.Candidates {
	c := &wire.Candidates{}
	for j := range 32 {
		c.Direct = append(c.Direct, fmt.Sprintf("[2001:db8::%x:%x]:%d", i, j, 10000+j))
	}
	return c
}

func TestAClientThatDoesNotReadStallsNobody(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"a", "b"}}})
	stuck := stuckClient(t, s, "b")
	src := s.join(t, "a")
	stuck.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: "any"})
	src.send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: "any"})
	next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 1 })
	// Every new candidate list of the source is a peers message for the
	// stuck destination: its window fills and control's writes to it block.
	for i := range 50 {
		src.send(t, manyCandidates(i))
	}
	time.Sleep(300 * time.Millisecond)

	// Punching sends to both sides. The source still gets its answer, and
	// its session goes on serving it.
	began := time.Now()
	src.send(t, &wire.PunchRequest{Peer: stuck.id.ID})
	next(t, src, func(m *wire.Punch) bool { return m.Peer == stuck.id.ID })
	src.send(t, &wire.Announce{Endpoint: "other", Role: "source", Route: "any"})
	next(t, src, func(m *wire.Peers) bool { return m.Endpoint == "other" })
	next(t, src, func(m *wire.PunchGo) bool { return true }) // control's 2 s barrier timeout
	if d := time.Since(began); d > 4*time.Second {
		t.Fatalf("the source's session took %v to answer", d)
	}
	select {
	case <-stuck.conn.Context().Done():
		t.Fatal("a client was dropped for not reading although its queue holds two messages")
	default:
	}
}

func TestAClientThatDoesNotReadIsDroppedWhenItsQueueOverflows(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"t"}}})
	stuck := stuckClient(t, s, "t")
	other := s.join(t, "t")
	// Each refused announce queues an error for the client that sent it.
	for range 600 {
		if err := wire.Write(stuck.st, &wire.Announce{Endpoint: "x", Role: "owner", Route: "any"}); err != nil {
			break // control closed the connection already
		}
	}
	select {
	case <-stuck.conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a client that does not read was kept")
	}
	var aerr *quic.ApplicationError
	if err := context.Cause(stuck.conn.Context()); !errors.As(err, &aerr) || aerr.ErrorCode != wire.ConnProtocol {
		t.Fatalf("connection closed with %v, want ConnProtocol", err)
	}
	other.send(t, &wire.Announce{Endpoint: "ok", Role: "source", Route: "any"})
	next(t, other, func(m *wire.Peers) bool { return m.Endpoint == "ok" })
}
