package control_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// A relay of the previous protocol would misread the tables control sends
// now: control answers its hello with an error that says to upgrade,
// which the relay logs, rather than fail it with a bare TLS alert.
func TestControlTellsAnOldRelayToUpgrade(t *testing.T) {
	s := startRelays(t, control.Config{Logger: slog.New(slog.DiscardHandler),
		Auth: control.Auth{RelayTokens: []string{"relay-token"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dialer := &quic.Transport{Conn: u}
	t.Cleanup(func() { dialer.Close(); u.Close() })

	id, err := identity.New("relay")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dialer.Dial(ctx, s.addr, &tls.Config{RootCAs: s.roots, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{id.Cert}, NextProtos: []string{wire.ALPNRelayControlV1}}, quicconf.Control())
	if err != nil {
		t.Fatalf("control refused the old protocol in the handshake: %v", err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = wire.Handshake(ctx, st, &wire.RelayHello{Token: "relay-token", Addr: "127.0.0.1:1"}, wire.ControlToRelay)
	var werr *wire.Error
	if !errors.As(err, &werr) || werr.Code != wire.CodeBadRequest || !strings.Contains(werr.Message, "upgrade") {
		t.Fatalf("hello of an old relay: %v, want an error telling it to upgrade", err)
	}
	if n := len(s.srv.Status().Relays); n != 0 {
		t.Fatalf("control lists %d relays, want none", n)
	}
}
