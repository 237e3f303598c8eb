package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/punch"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// rawClient is a client speaking the control protocol by hand, to send
// what a real client never would.
type rawClient struct {
	id   *identity.Identity
	conn *quic.Conn
	st   *quic.Stream
}

func dialRaw(t *testing.T, tp *topology, token string) *rawClient {
	return dialRawWith(t, tp, token, quicconf.Control())
}

// dialRawWith dials with qc (e.g. a tiny receive window) and says hello.
func dialRawWith(t *testing.T, tp *topology, token string, qc *quic.Config) *rawClient {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(tp.dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	id, err := identity.New("raw")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr(tp.serverPort), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{id.Cert}, NextProtos: []string{wire.ALPNClientControl}}, qc)
	if err != nil {
		t.Fatalf("dial control: %v", err)
	}
	t.Cleanup(func() { _ = conn.CloseWithError(0, "") })
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{id: id, conn: conn, st: st}
	c.send(t, &wire.Hello{Token: token, Punch: true})
	if _, ok := c.read(t).(*wire.Welcome); !ok {
		t.Fatal("no welcome")
	}
	return c
}

func (c *rawClient) send(t *testing.T, m wire.Message) {
	t.Helper()
	if err := wire.Write(c.st, m); err != nil {
		t.Fatalf("send %T: %v", m, err)
	}
}

func (c *rawClient) read(t *testing.T) wire.Message {
	t.Helper()
	_ = c.st.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := wire.Read(c.st, wire.ControlToClient)
	if err != nil {
		t.Fatalf("read from control: %v", err)
	}
	return m
}

// A source names a third party's address (here a socket of the test's) as
// its candidate and asks for many punch attempts at once. The real
// destination probes that address at most punch.UnansweredProbes times in
// all, since it never answers: a punch_request is no lever to make peers
// send packets anywhere.
func TestAPeersSilentCandidateGetsABoundedNumberOfProbes(t *testing.T) {
	tp := newTopology(t, endpoint{"svc", "direct", "direct"})
	tp.startEcho(t)
	tp.startServer(t)
	tp.dst = tp.connetd(t, "dst", "--config", "dst.toml")
	victim, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()

	src := dialRaw(t, tp, "client-s-token")
	src.send(t, &wire.Candidates{Direct: []string{victim.LocalAddr().String()}, NAT: wire.NATEasy})
	src.send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: wire.RouteDirect})
	var dst wire.Peer
	for dst.Cert == nil {
		if p, ok := src.read(t).(*wire.Peers); ok && len(p.Peers) == 1 {
			dst = p.Peers[0]
		}
	}
	const attempts = 6 // each would send the candidate 9 pings or more
	for range attempts {
		src.send(t, &wire.PunchRequest{Peer: dst.ID})
	}
	punches := 0
	deadline := time.Now().Add(10 * time.Second)
	for punches < attempts && time.Now().Before(deadline) {
		if p, ok := src.read(t).(*wire.Punch); ok {
			punches++
			src.send(t, &wire.PunchReady{Nonce: p.Nonce})
		}
	}
	if punches != attempts {
		t.Fatalf("control started %d of %d attempts", punches, attempts)
	}

	// Every attempt probes for 3 s after its go; count until they are over.
	got := 0
	buf := make([]byte, 1500)
	_ = victim.SetReadDeadline(time.Now().Add(6 * time.Second))
	for {
		n, err := victim.Read(buf)
		if err != nil {
			break
		}
		if _, err := wire.ParseProbe(buf[:n]); err != nil {
			t.Fatalf("the candidate got something other than a probe: %q", buf[:n])
		}
		got++
	}
	if got == 0 {
		t.Fatal("the destination sent the candidate no probe: the attempts did not run, nothing was checked")
	}
	if got > punch.UnansweredProbes {
		t.Fatalf("a silent candidate got %d probes from %d attempts, want at most %d", got, attempts, punch.UnansweredProbes)
	}
	t.Logf("%d attempts, %d probes to the silent candidate (budget %d)", attempts, got, punch.UnansweredProbes)
}
