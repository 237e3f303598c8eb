package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// controlDialer opens QUIC connections to the topology's control server
// from one UDP socket, so that all of them come from one address.
type controlDialer struct {
	tr   *quic.Transport
	to   *net.UDPAddr
	tlsC *tls.Config
}

func newControlDialer(t *testing.T, tp *topology) *controlDialer {
	t.Helper()
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: u}
	t.Cleanup(func() { tr.Close(); u.Close() })
	pem, err := os.ReadFile(filepath.Join(tp.dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	id, err := identity.New("e2e")
	if err != nil {
		t.Fatal(err)
	}
	return &controlDialer{tr: tr, to: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tp.serverPort},
		tlsC: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{id.Cert},
			NextProtos: []string{wire.ALPNClientControl}, MinVersion: tls.VersionTLS13}}
}

func (d *controlDialer) dial(t *testing.T) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := d.tr.Dial(ctx, d.to, d.tlsC, quicconf.Control())
	if err != nil {
		t.Fatalf("dial control: %v", err)
	}
	return conn
}

// hello sends body as the first frame and reports whether a welcome came back.
func (d *controlDialer) hello(t *testing.T, body string) (welcomed bool) {
	t.Helper()
	conn := d.dial(t)
	defer conn.CloseWithError(0, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	if _, err := st.Write(append(frame, body...)); err != nil {
		return false
	}
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := wire.Read(st, wire.ControlToClient)
	_, ok := m.(*wire.Welcome)
	return err == nil && ok
}

func helloBody(token, pad string) string {
	return fmt.Sprintf(`{"hello":{"token":%q,"version":"e2e","direct":[],"pad":%q}}`, token, pad)
}

// Before a connection has shown a valid token it may cost little: its
// hello is small, one address holds few such connections, and a flood of
// bad tokens logs a few lines, not one each.
func TestUnauthenticatedConnectionsCostLittle(t *testing.T) {
	tp := newTopology(t)
	tp.startServer(t)
	d := newControlDialer(t, tp)

	if !d.hello(t, helloBody("client-d-token", "")) {
		t.Fatal("a plain hello with a valid token was not welcomed")
	}
	if d.hello(t, helloBody("client-d-token", strings.Repeat("x", 100<<10))) {
		t.Fatal("a 100 KiB hello was welcomed; hellos are limited to 64 KiB")
	}

	// Connections that never say hello: one address may hold 16.
	var held []*quic.Conn
	for range 24 {
		held = append(held, d.dial(t))
	}
	time.Sleep(time.Second) // well within the hello timeout
	closed := 0
	for _, c := range held {
		if c.Context().Err() != nil {
			closed++
		}
	}
	if closed < 24-16 {
		t.Fatalf("%d of 24 silent connections from one address were closed at once, want at least %d", closed, 24-16)
	}
	for _, c := range held {
		_ = c.CloseWithError(0, "")
	}
	// Once they are gone, the address is welcome again.
	deadline := time.Now().Add(5 * time.Second)
	for !d.hello(t, helloBody("client-d-token", "")) {
		if time.Now().After(deadline) {
			t.Fatal("the address was not let in again after its silent connections closed")
		}
		time.Sleep(100 * time.Millisecond)
	}

	for range 20 {
		if d.hello(t, helloBody("wrong-token", "")) {
			t.Fatal("a wrong token was welcomed")
		}
	}
	// 8 connections over the limit and 20 bad tokens: the address's log
	// budget is a burst of 3 and one line per 10 s after that.
	if n := strings.Count(tp.server.out.String(), "refused"); n == 0 || n > 5 {
		t.Fatalf("28 refusals of one address logged %d lines, want 1 to 5", n)
	}
}
