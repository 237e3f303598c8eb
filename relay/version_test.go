package relay_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/testcert"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/wire"
)

// A control server of the previous protocol fails the relay's handshake
// with a TLS alert; the relay's error says what that alert means.
func TestRelaySaysWhenControlSpeaksAnotherProtocol(t *testing.T) {
	c, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	old := quicTransport(t)
	ln, err := old.Listen(&tls.Config{Certificates: []tls.Certificate{c.TLS}, ClientAuth: tls.RequireAnyClientCert,
		NextProtos: []string{wire.ALPNRelayControlV1}}, quicconf.Control())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := startRelay(t, relay.Config{Conn: udp(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = srv.DialControl(ctx, old.Conn.LocalAddr().String(), &tls.Config{RootCAs: c.Pool, ServerName: "127.0.0.1"}, "t", "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "does not speak "+wire.ALPNRelayControl) {
		t.Fatalf("dial of an old control: %v, want an error naming the protocol", err)
	}
}
