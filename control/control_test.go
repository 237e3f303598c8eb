package control_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/syncbuf"
	"github.com/connetd/connetd/internal/testcert"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

type server struct {
	addr  *net.UDPAddr
	roots *x509.CertPool
	srv   *control.Server
	logs  *syncbuf.Buffer // what the server logged, unless the test gave a logger
}

// start runs a control server for clients on loopback until the test ends.
func start(t *testing.T, cfg control.Config) *server {
	t.Helper()
	return startServing(t, cfg, (*control.Server).ServeClients)
}

// startRelays runs a control server for relays on loopback.
func startRelays(t *testing.T, cfg control.Config) *server {
	t.Helper()
	return startServing(t, cfg, (*control.Server).ServeRelays)
}

func startServing(t *testing.T, cfg control.Config, serve func(*control.Server, context.Context, *quic.Transport) error) *server {
	t.Helper()
	c, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	cfg.Cert = c.TLS
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	srv := control.New(cfg)
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: u}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = serve(srv, ctx, tr) }()
	t.Cleanup(func() { cancel(); <-done; tr.Close(); u.Close() })
	return &server{addr: u.LocalAddr().(*net.UDPAddr), roots: c.Pool, srv: srv, logs: logs}
}

// session is a raw client speaking the wire protocol.
type session struct {
	id   *identity.Identity
	conn *quic.Conn
	st   *quic.Stream
}

func (s *server) dial(t *testing.T, token string) (*session, wire.Message, error) {
	return s.dialWith(t, token, quicconf.Control())
}

// dialWith connects with qc (e.g. a tiny receive window) and says hello.
func (s *server) dialWith(t *testing.T, token string, qc *quic.Config) (*session, wire.Message, error) {
	t.Helper()
	return s.dialFrom(t, net.IPv4(127, 0, 0, 1), token, qc)
}

// dialFrom connects from a socket bound to local (any address of 127/8 is
// the loopback's) and says hello.
func (s *server) dialFrom(t *testing.T, local net.IP, token string, qc *quic.Config) (*session, wire.Message, error) {
	t.Helper()
	id, err := identity.New("client")
	if err != nil {
		t.Fatal(err)
	}
	return s.dialAs(t, id, local, token, qc)
}

// dialAs connects as the client id (a reconnect keeps its identity).
func (s *server) dialAs(t *testing.T, id *identity.Identity, local net.IP, token string, qc *quic.Config) (*session, wire.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: local})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: u}
	t.Cleanup(func() { tr.Close(); u.Close() })
	conn, err := tr.Dial(ctx, s.addr, &tls.Config{RootCAs: s.roots, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{id.Cert}, NextProtos: []string{wire.ALPNClientControl}}, qc)
	if err != nil {
		return nil, nil, err
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := wire.Write(st, &wire.Hello{Token: token, Punch: true}); err != nil {
		return nil, nil, err
	}
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := wire.Read(st, wire.ControlToClient)
	if err != nil {
		return nil, nil, err
	}
	return &session{id: id, conn: conn, st: st}, m, nil
}

// join dials and insists on a welcome.
func (s *server) join(t *testing.T, token string) *session {
	t.Helper()
	sess, m, err := s.dial(t, token)
	if _, ok := m.(*wire.Welcome); err != nil || !ok {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	return sess
}

func (s *session) send(t *testing.T, m wire.Message) {
	t.Helper()
	if err := wire.Write(s.st, m); err != nil {
		t.Fatal(err)
	}
}

// next reads s until a message of type T that want takes arrives.
func next[T wire.Message](t *testing.T, s *session, want func(T) bool) T {
	t.Helper()
	_ = s.st.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		m, err := wire.Read(s.st, wire.ControlToClient)
		if err != nil {
			t.Fatalf("waiting for a message: %v", err)
		}
		if m, ok := m.(T); ok && want(m) {
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
	if e, ok := m.(*wire.Error); !ok || e.Code != wire.CodeUnauthorized {
		t.Fatalf("answer %+v, want an unauthorized error", m)
	}
	select {
	case <-sess.conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection left open after a refused hello")
	}
	if got := s.srv.Status().Refusals[control.RefusedInvalidToken]; got != 1 {
		t.Fatalf("%d refusals for %s, want 1", got, control.RefusedInvalidToken)
	}
}

func TestPeersLearnEachOtherWithCertificatesAndObservedAddresses(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"a", "b"}}})
	src, m, err := s.dial(t, "a")
	w, ok := m.(*wire.Welcome)
	if err != nil || !ok {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	if _, err := netip.ParseAddrPort(w.Observed); err != nil {
		t.Fatalf("observed address %q: %v", w.Observed, err)
	}
	dst := s.join(t, "b")
	src.send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: "any"})
	dst.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: "relay"})
	got := next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 1 })
	p := got.Peers[0]
	if p.ID != dst.id.ID || identity.IDOf(p.Cert) != dst.id.ID || p.Route != "relay" || len(p.Direct) == 0 {
		t.Fatalf("source learned %+v, want the destination's id, certificate, route and addresses", p)
	}
	got = next(t, dst, func(m *wire.Peers) bool { return len(m.Peers) == 1 })
	if got.Peers[0].ID != src.id.ID {
		t.Fatalf("destination learned %+v, want the source", got.Peers[0])
	}
	dst.send(t, &wire.Withdraw{Endpoint: "svc", Role: "destination"})
	next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 0 })
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
	c := s.join(t, "n")
	c.send(t, &wire.Announce{Endpoint: "db", Role: "source", Route: "any"})
	e := next(t, c, func(m *wire.Error) bool { return true })
	if e.Code != wire.CodeForbidden || e.Endpoint != "db" {
		t.Fatalf("announce of a name outside name-matches: %+v", e)
	}
	c.send(t, &wire.Announce{Endpoint: "web-1", Role: "source", Route: "any"})
	next(t, c, func(m *wire.Peers) bool { return m.Endpoint == "web-1" })

	r := s.join(t, "r")
	r.send(t, &wire.Announce{Endpoint: "x", Role: "source", Route: "any"})
	e = next(t, r, func(m *wire.Error) bool { return true })
	if e.Code != wire.CodeForbidden {
		t.Fatalf("source announce with a destination-only token: %+v", e)
	}
}

// ip-restriction is applied to the connection before its hello is read:
// a denied address learns nothing about tokens, and costs no token
// comparison. The refusal is the connection closed with ConnUnauthorized
// "address not allowed"; a token check would instead answer an Error
// message ("invalid token") on the stream first.
func TestIPRestrictionRefusesBeforeTheToken(t *testing.T) {
	deny, err := restrict.ParseIP(nil, []string{"127.0.0.2/32"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"good"}, ClientIP: deny}, Logger: log})
	allowed, denied := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)

	// The same server and token welcome a client from an allowed address:
	// what refuses the others is the address alone.
	if _, m, err := s.dialFrom(t, allowed, "good", quicconf.Control()); err != nil || !isWelcome(m) {
		t.Fatalf("client from an allowed address: %+v, %v; want a welcome", m, err)
	}
	for _, token := range []string{"not-a-token", "good"} {
		_, m, err := s.dialFrom(t, denied, token, quicconf.Control())
		var app *quic.ApplicationError
		if !errors.As(err, &app) || !app.Remote || app.ErrorCode != wire.ConnUnauthorized || app.ErrorMessage != "address not allowed" {
			t.Fatalf("client from a denied address with token %q: answer %+v, error %v; want the connection closed by the server with ConnUnauthorized \"address not allowed\"", token, m, err)
		}
	}
	logs.WaitFor(t, "refused connection by ip-restriction", 5*time.Second)
	if out := logs.String(); strings.Contains(out, "invalid token") || strings.Count(out, "client connected") != 1 {
		t.Fatalf("the server checked a denied client's token or let it in:\n%s", out)
	}
	// Both refusals are counted for metrics, as the address's, not the token's.
	if got := s.srv.Status().Refusals; got[control.RefusedAddress] != 2 || got[control.RefusedInvalidToken] != 0 {
		t.Fatalf("refusals %v; want 2 for %s and none for %s", got, control.RefusedAddress, control.RefusedInvalidToken)
	}
}

func TestBadAnnouncementsAreRefusedAndTheSessionGoesOn(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"t"}}})
	c := s.join(t, "t")
	for _, a := range []wire.Announce{
		{Endpoint: "", Role: "source", Route: "any"},
		{Endpoint: "x", Role: "owner", Route: "any"},
		{Endpoint: "x", Role: "source", Route: "sideways"},
		{Endpoint: "bad\x00name", Role: "source", Route: "any"},
	} {
		c.send(t, &a)
		e := next(t, c, func(m *wire.Error) bool { return true })
		if e.Code != wire.CodeBadRequest {
			t.Fatalf("announce %+v: %+v, want bad_request", a, e)
		}
	}
	c.send(t, &wire.Announce{Endpoint: "ok", Role: "source", Route: "any"})
	next(t, c, func(m *wire.Peers) bool { return m.Endpoint == "ok" })
}

func TestRevokedTokenDisconnectsItsClientsAtOnce(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"keep", "drop"}}})
	kept := s.join(t, "keep")
	dropped := s.join(t, "drop")
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
	if _, m, err := s.dial(t, "drop"); err == nil && isWelcome(m) {
		t.Fatal("revoked token still accepted")
	}
}

func isWelcome(m wire.Message) bool {
	_, ok := m.(*wire.Welcome)
	return ok
}
