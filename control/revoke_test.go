package control_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// A token revoked after a client passed its token check but before its
// session was registered finds no session to close; control checks the
// token again once the session is registered and closes it then.
func TestClientWhoseTokenIsRevokedWhileItRegistersIsClosed(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"keep", "drop"}}})
	kept := s.join(t, "keep")
	var hits atomic.Int32
	control.SetBeforeRegister(s.srv, func() {
		hits.Add(1)
		s.srv.SetAuth(control.Auth{ClientTokens: []string{"keep"}})
	})
	// The hook runs only once the token check passed; the welcome, sent
	// before registration, may be lost to the close that follows at once.
	dropped, m, err := s.dial(t, "drop")
	if err == nil {
		if !isWelcome(m) {
			t.Fatalf("hello: %+v, want a welcome", m)
		}
		waitClosed(t, dropped.conn, "a client whose token was revoked between its token check and its registration")
	} else {
		wantClosedByControl(t, err)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the revocation ran in %d sessions, want 1: the window was not hit", n)
	}
	select {
	case <-kept.conn.Context().Done():
		t.Fatal("the client with the kept token was disconnected")
	case <-time.After(200 * time.Millisecond):
	}
	waitClients(t, s.srv, 1)
}

// The same holds for a relay's link.
func TestRelayWhoseTokenIsRevokedWhileItRegistersIsClosed(t *testing.T) {
	s := startRelays(t, control.Config{Logger: slog.New(slog.DiscardHandler),
		Auth: control.Auth{RelayTokens: []string{"keep", "drop"}}})
	srv, addr := s.srv, s.addr
	tlsConf := func() *tls.Config {
		return &tls.Config{RootCAs: s.roots, ServerName: "127.0.0.1", NextProtos: []string{wire.ALPNRelayControl}}
	}

	kept, err := dialRelay(t, tlsConf(), addr, "keep")
	if err != nil {
		t.Fatal(err)
	}
	waitRelays(t, srv, 1)
	var hits atomic.Int32
	control.SetBeforeRegister(srv, func() {
		hits.Add(1)
		srv.SetAuth(control.Auth{RelayTokens: []string{"keep"}})
	})
	if dropped, err := dialRelay(t, tlsConf(), addr, "drop"); err == nil {
		waitClosed(t, dropped, "a relay whose token was revoked between its token check and its registration")
	} else {
		wantClosedByControl(t, err)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the revocation ran in %d links, want 1: the window was not hit", n)
	}
	select {
	case <-kept.Context().Done():
		t.Fatal("the relay with the kept token was disconnected")
	case <-time.After(200 * time.Millisecond):
	}
	waitRelays(t, srv, 1)
}

// dialRelay links to control as a relay; the connection comes back with a
// welcome, else the error that stopped the hello.
func dialRelay(t *testing.T, tc *tls.Config, addr *net.UDPAddr, token string) (*quic.Conn, error) {
	t.Helper()
	id, err := identity.New("relay")
	if err != nil {
		t.Fatal(err)
	}
	tc.Certificates = []tls.Certificate{id.Cert}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: u}
	t.Cleanup(func() { tr.Close(); u.Close() })
	conn, err := tr.Dial(ctx, addr, tc, quicconf.Control())
	if err != nil {
		return nil, err
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if err := wire.Write(st, &wire.RelayHello{Token: token, Addr: "127.0.0.1:19191"}); err != nil {
		return nil, err
	}
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := wire.Read(st, wire.ControlToRelay)
	if err != nil {
		return nil, err
	}
	if !isWelcome(m) {
		t.Fatalf("relay hello with %q: %+v, want a welcome", token, m)
	}
	return conn, nil
}

func waitClosed(t *testing.T, conn *quic.Conn, who string) {
	t.Helper()
	select {
	case <-conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal(who + " is still connected")
	}
}

// wantClosedByControl accepts the error of a hello cut short by control
// closing the connection.
func wantClosedByControl(t *testing.T, err error) {
	t.Helper()
	var appErr *quic.ApplicationError
	if !errors.As(err, &appErr) || !appErr.Remote {
		t.Fatalf("hello failed with %v; want control to have closed the connection", err)
	}
}

func waitClients(t *testing.T, srv *control.Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if len(srv.Status().Clients) == n {
			return
		}
	}
	t.Fatalf("control lists %d clients, want %d", len(srv.Status().Clients), n)
}
