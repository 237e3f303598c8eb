package control_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/testcert"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

type server struct {
	addr  *net.UDPAddr
	roots *x509.CertPool
	srv   *control.Server
}

func start(t *testing.T, cfg control.Config) *server {
	t.Helper()
	c, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	roots := c.Pool
	cfg.Cert = c.TLS
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv := control.New(cfg)
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: u}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeClients(ctx, tr) }()
	t.Cleanup(func() { cancel(); <-done; tr.Close(); u.Close() })
	return &server{addr: u.LocalAddr().(*net.UDPAddr), roots: roots, srv: srv}
}

// session is a raw client speaking the wire protocol.
type session struct {
	id   *identity.Identity
	conn *quic.Conn
	st   *quic.Stream
}

func (s *server) dial(t *testing.T, token string) (*session, *wire.Message, error) {
	t.Helper()
	id, err := identity.New("client")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: u}
	t.Cleanup(func() { tr.Close(); u.Close() })
	conn, err := tr.Dial(ctx, s.addr, &tls.Config{RootCAs: s.roots, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{id.Cert}, NextProtos: []string{wire.ALPNClientControl}}, quicconf.Control())
	if err != nil {
		return nil, nil, err
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := wire.Write(st, &wire.Message{Hello: &wire.Hello{Token: token, Punch: true}}); err != nil {
		return nil, nil, err
	}
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := wire.Read(st)
	if err != nil {
		return nil, nil, err
	}
	return &session{id: id, conn: conn, st: st}, m, nil
}

func (s *session) send(t *testing.T, m *wire.Message) {
	t.Helper()
	if err := wire.Write(s.st, m); err != nil {
		t.Fatal(err)
	}
}

// next reads until a message matching want arrives.
func (s *session) next(t *testing.T, want func(*wire.Message) bool) *wire.Message {
	t.Helper()
	_ = s.st.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		m, err := wire.Read(s.st)
		if err != nil {
			t.Fatalf("waiting for a message: %v", err)
		}
		if want(m) {
			return m
		}
	}
}

func TestWrongTokenGetsUnauthorizedAndTheConnectionCloses(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"good"}}})
	sess, m, err := s.dial(t, "goo")
	if err != nil {
		t.Fatal(err)
	}
	if m.Error == nil || m.Error.Code != wire.CodeUnauthorized {
		t.Fatalf("answer %+v, want an unauthorized error", m)
	}
	select {
	case <-sess.conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection left open after a refused hello")
	}
}

func TestPeersLearnEachOtherWithCertificatesAndObservedAddresses(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"a", "b"}}})
	src, m, err := s.dial(t, "a")
	if err != nil || m.Welcome == nil {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	if _, err := netip.ParseAddrPort(m.Welcome.Observed); err != nil {
		t.Fatalf("observed address %q: %v", m.Welcome.Observed, err)
	}
	dst, m, err := s.dial(t, "b")
	if err != nil || m.Welcome == nil {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	src.send(t, &wire.Message{Announce: &wire.Announce{Endpoint: "svc", Role: "source", Route: "any"}})
	dst.send(t, &wire.Message{Announce: &wire.Announce{Endpoint: "svc", Role: "destination", Route: "relay"}})
	got := src.next(t, func(m *wire.Message) bool { return m.Peers != nil && len(m.Peers.Peers) == 1 })
	p := got.Peers.Peers[0]
	if p.ID != dst.id.ID || identity.IDOf(p.Cert) != dst.id.ID || p.Route != "relay" || len(p.Direct) == 0 {
		t.Fatalf("source learned %+v, want the destination's id, certificate, route and addresses", p)
	}
	got = dst.next(t, func(m *wire.Message) bool { return m.Peers != nil && len(m.Peers.Peers) == 1 })
	if got.Peers.Peers[0].ID != src.id.ID {
		t.Fatalf("destination learned %+v, want the source", got.Peers.Peers[0])
	}
	dst.send(t, &wire.Message{Withdraw: &wire.Withdraw{Endpoint: "svc", Role: "destination"}})
	src.next(t, func(m *wire.Message) bool { return m.Peers != nil && len(m.Peers.Peers) == 0 })
}

func TestTokenRestrictionsLimitNamesAndRoles(t *testing.T) {
	names, err := restrict.ParseToken(nil, nil, "^web-", "")
	if err != nil {
		t.Fatal(err)
	}
	role, err := restrict.ParseToken(nil, nil, "", "destination")
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"n", "r"}, ClientTokenRestricts: []restrict.Token{names, role}}})
	c, m, err := s.dial(t, "n")
	if err != nil || m.Welcome == nil {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	c.send(t, &wire.Message{Announce: &wire.Announce{Endpoint: "db", Role: "source", Route: "any"}})
	e := c.next(t, func(m *wire.Message) bool { return m.Error != nil })
	if e.Error.Code != wire.CodeForbidden || e.Error.Endpoint != "db" {
		t.Fatalf("announce of a name outside name-matches: %+v", e.Error)
	}
	c.send(t, &wire.Message{Announce: &wire.Announce{Endpoint: "web-1", Role: "source", Route: "any"}})
	c.next(t, func(m *wire.Message) bool { return m.Peers != nil && m.Peers.Endpoint == "web-1" })

	r, m, err := s.dial(t, "r")
	if err != nil || m.Welcome == nil {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	r.send(t, &wire.Message{Announce: &wire.Announce{Endpoint: "x", Role: "source", Route: "any"}})
	e = r.next(t, func(m *wire.Message) bool { return m.Error != nil })
	if e.Error.Code != wire.CodeForbidden {
		t.Fatalf("source announce with a destination-only token: %+v", e.Error)
	}
}

func TestIPRestrictionRefusesBeforeTheToken(t *testing.T) {
	deny, err := restrict.ParseIP(nil, []string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"good"}, ClientIP: deny}})
	_, m, err := s.dial(t, "good")
	if err == nil && m.Welcome != nil {
		t.Fatal("a denied address was welcomed")
	}
}

func TestBadAnnouncementsAreRefusedAndTheSessionGoesOn(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"t"}}})
	c, m, err := s.dial(t, "t")
	if err != nil || m.Welcome == nil {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	for _, a := range []wire.Announce{
		{Endpoint: "", Role: "source", Route: "any"},
		{Endpoint: "x", Role: "owner", Route: "any"},
		{Endpoint: "x", Role: "source", Route: "sideways"},
		{Endpoint: "bad\x00name", Role: "source", Route: "any"},
	} {
		c.send(t, &wire.Message{Announce: &a})
		e := c.next(t, func(m *wire.Message) bool { return m.Error != nil })
		if e.Error.Code != wire.CodeBadRequest {
			t.Fatalf("announce %+v: %+v, want bad_request", a, e.Error)
		}
	}
	c.send(t, &wire.Message{Announce: &wire.Announce{Endpoint: "ok", Role: "source", Route: "any"}})
	c.next(t, func(m *wire.Message) bool { return m.Peers != nil && m.Peers.Endpoint == "ok" })
}

func TestRevokedTokenDisconnectsItsClientsAtOnce(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"keep", "drop"}}})
	kept, m, err := s.dial(t, "keep")
	if err != nil || m.Welcome == nil {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	dropped, m, err := s.dial(t, "drop")
	if err != nil || m.Welcome == nil {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	s.srv.SetAuth(control.Auth{ClientTokens: []string{"keep"}})
	select {
	case <-dropped.conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client with a revoked token is still connected")
	}
	select {
	case <-kept.conn.Context().Done():
		t.Fatal("client with a kept token was disconnected")
	case <-time.After(200 * time.Millisecond):
	}
	if _, m, err := s.dial(t, "drop"); err == nil && m.Welcome != nil {
		t.Fatal("revoked token still accepted")
	}
}
