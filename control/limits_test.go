package control_test

import (
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/wire"
)

// limitRefusal checks that e refuses for a limit, saying want.
func limitRefusal(t *testing.T, what string, e *wire.Error, want string) {
	t.Helper()
	if e.Code != wire.CodeLimitExceeded || !strings.Contains(e.Message, want) {
		t.Fatalf("%s: refused with %+v, want code %s and %q", what, e, wire.CodeLimitExceeded, want)
	}
}

func TestSessionsPerTokenAreBounded(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"t", "u"}},
		Limits: control.Limits{SessionsPerToken: 3}})
	var held []*session
	for range 3 {
		held = append(held, s.join(t, "t"))
	}
	sess, m, err := s.dial(t, "t")
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m.(*wire.Error)
	if !ok {
		t.Fatalf("a 4th session of a token limited to 3 was answered %+v", m)
	}
	limitRefusal(t, "4th session", e, "too many sessions for this token: at most 3")
	select {
	case <-sess.conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection left open after a refused hello")
	}
	s.logs.WaitFor(t, "client refused: too many sessions for this token", 2*time.Second)
	s.join(t, "u") // another token has its own count

	// A session that ends gives its place back.
	_ = held[0].conn.CloseWithError(0, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, m, err := s.dial(t, "t")
		if err == nil && isWelcome(m) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session after one of three ended: %+v, %v", m, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEndpointsPerClientAreBounded(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"t"}},
		Limits: control.Limits{EndpointsPerClient: 3}})
	c := s.join(t, "t")
	for _, name := range []string{"a", "b", "c"} {
		c.send(t, &wire.Announce{Endpoint: name, Role: "source", Route: "any"})
		next(t, c, func(m *wire.Peers) bool { return m.Endpoint == name })
	}
	c.send(t, &wire.Announce{Endpoint: "d", Role: "source", Route: "any"})
	e := next(t, c, func(m *wire.Error) bool { return true })
	if e.Endpoint != "d" || e.Role != "source" {
		t.Fatalf("the refusal names %q/%q, want the 4th endpoint d/source", e.Endpoint, e.Role)
	}
	limitRefusal(t, "4th endpoint", e, "too many endpoints for this client: at most 3")
	s.logs.WaitFor(t, "endpoint refused: too many endpoints for this client", 2*time.Second)

	// A new route for an endpoint it has is no new endpoint; the session
	// goes on, and a withdrawn endpoint makes room.
	c.send(t, &wire.Announce{Endpoint: "a", Role: "source", Route: "direct"})
	c.send(t, &wire.Withdraw{Endpoint: "b", Role: "source"})
	c.send(t, &wire.Announce{Endpoint: "d", Role: "source", Route: "any"})
	for {
		m := next(t, c, func(m wire.Message) bool { return true })
		if e, ok := m.(*wire.Error); ok {
			t.Fatalf("refused: %+v", e)
		}
		if p, ok := m.(*wire.Peers); ok && p.Endpoint == "d" {
			break
		}
	}
	if st := s.srv.Status(); len(st.Clients) != 1 || len(st.Clients[0].Endpoints) != 3 {
		t.Fatalf("control holds %+v, want one client with 3 endpoints", st.Clients)
	}
}

func TestPeersPerEndpointAreBounded(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"t"}},
		Limits: control.Limits{PeersPerEndpoint: 2}})
	var dsts []*session
	for range 3 {
		dsts = append(dsts, s.join(t, "t"))
	}
	for _, d := range dsts[:2] {
		d.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: "any"})
		next(t, d, func(m *wire.Peers) bool { return m.Endpoint == "svc" })
	}
	dsts[2].send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: "any"})
	e := next(t, dsts[2], func(m *wire.Error) bool { return true })
	if e.Endpoint != "svc" || e.Role != "destination" {
		t.Fatalf("the refusal names %q/%q, want svc/destination", e.Endpoint, e.Role)
	}
	limitRefusal(t, "3rd destination", e, "too many clients on this endpoint name and role: at most 2")
	s.logs.WaitFor(t, "endpoint refused: too many clients on this endpoint", 2*time.Second)

	// The other role of the name counts apart: the refused client may be a
	// source, and sees the two destinations only.
	dsts[2].send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: "any"})
	p := next(t, dsts[2], func(m *wire.Peers) bool { return m.Endpoint == "svc" && m.Role == "source" && len(m.Peers) > 0 })
	if len(p.Peers) != 2 {
		t.Fatalf("the source sees %d destinations, want 2", len(p.Peers))
	}
}

func TestPunchRequestsAreRateLimited(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"a", "b"}},
		Limits: control.Limits{PunchesPerMinute: 3}})
	src, dst := pair(t, s, "any", "any")
	for range 4 {
		src.send(t, &wire.PunchRequest{Peer: dst.id.ID})
	}
	// Control answers requests in order: three attempts, then the refusal.
	punches := 0
	var e *wire.Error
	for e == nil {
		switch m := next(t, src, func(m wire.Message) bool { return true }).(type) {
		case *wire.Punch:
			punches++
		case *wire.Error:
			e = m
		}
	}
	if punches != 3 {
		t.Fatalf("%d attempts before the refusal, want 3", punches)
	}
	if e.Endpoint != "" {
		t.Fatalf("a punch refusal names endpoint %q", e.Endpoint)
	}
	limitRefusal(t, "4th punch request", e, "too many punch requests: at most 3 a minute")
	s.logs.WaitFor(t, "punch request refused: too many punch requests", 2*time.Second)

	// A flood of refused requests logs a few lines, not one each.
	for range 20 {
		src.send(t, &wire.PunchRequest{Peer: dst.id.ID})
	}
	for range 20 {
		next(t, src, func(m *wire.Error) bool { return true })
	}
	if n := strings.Count(s.logs.String(), "punch request refused"); n > 3 {
		t.Fatalf("21 refused punch requests logged %d lines, want at most 3", n)
	}

	// The session goes on.
	src.send(t, &wire.Announce{Endpoint: "other", Role: "source", Route: "any"})
	next(t, src, func(m *wire.Peers) bool { return m.Endpoint == "other" })
}
