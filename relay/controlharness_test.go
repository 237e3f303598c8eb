package relay_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/testcert"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/wire"
)

// linked is a real control server and a real relay linked to it over QUIC
// on loopback, as in a deployment with separate control and relay hosts.
type linked struct {
	ctl        *control.Server
	clientAddr *net.UDPAddr // control's listener for clients
	roots      *x509.CertPool
	relay      *relay.Server
	relayID    *identity.Identity
	relayAddr  netip.AddrPort
	dials      atomic.Int32 // links the relay opened to control
	joined     atomic.Int32 // client sessions opened
	// record, if set before the relay dials, gets a copy of every byte
	// control sends on the link.
	record io.Writer
}

func startLinked(t *testing.T, ctx context.Context, lim control.Limits, record io.Writer) *linked {
	t.Helper()
	c, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	l := &linked{roots: c.Pool, record: record}
	if l.relayID, err = identity.New("relay"); err != nil {
		t.Fatal(err)
	}
	l.ctl = control.New(control.Config{Cert: c.TLS, Logger: slog.New(slog.DiscardHandler),
		Auth:   control.Auth{ClientTokens: clientTokens, RelayTokens: []string{"relay-token"}},
		Limits: lim})
	clients, relays, ru := quicTransport(t), quicTransport(t), udp(t)
	l.clientAddr = clients.Conn.LocalAddr().(*net.UDPAddr)
	l.relayAddr = ru.LocalAddr().(*net.UDPAddr).AddrPort()
	l.relay = relay.New(relay.Config{Identity: l.relayID, Conn: ru, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait(); l.relay.Close() })
	wg.Go(func() { _ = l.ctl.ServeClients(ctx, clients) })
	wg.Go(func() { _ = l.ctl.ServeRelays(ctx, relays) })
	wg.Go(func() { _ = l.relay.Run(ctx) })
	ctlAddr := relays.Conn.LocalAddr().String()
	tlsConf := &tls.Config{RootCAs: c.Pool, ServerName: "127.0.0.1"}
	wg.Go(func() {
		_ = l.relay.RunControl(ctx, func(ctx context.Context) (io.ReadWriteCloser, error) {
			l.dials.Add(1)
			rw, err := l.relay.DialControl(ctx, ctlAddr, tlsConf, "relay-token", l.relayAddr.String())
			if err != nil || l.record == nil {
				return rw, err
			}
			return recorded{rw, io.TeeReader(rw, l.record)}, nil
		})
	})
	return l
}

// clientTokens are enough for 256 sessions under control's default limit
// of sessions per token; join takes them in turn.
var clientTokens = func() []string {
	var out []string
	for i := range 256 / control.DefaultSessionsPerToken {
		out = append(out, fmt.Sprintf("client-token-%d", i))
	}
	return out
}()

type recorded struct {
	io.ReadWriteCloser
	r io.Reader
}

func (r recorded) Read(p []byte) (int, error) { return r.r.Read(p) }

func quicTransport(t *testing.T) *quic.Transport {
	t.Helper()
	tr := &quic.Transport{Conn: udp(t)}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// ctlSession is a raw client session with control: it announces what the
// test tells it to and reads (and drops) whatever control sends.
type ctlSession struct {
	conn *quic.Conn
	st   *quic.Stream
}

// join opens a session for id and waits for control's welcome.
func (l *linked) join(t *testing.T, ctx context.Context, id *identity.Identity) *ctlSession {
	t.Helper()
	// Room for a loaded machine; the hello has its own bound besides.
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := quicTransport(t).Dial(hctx, l.clientAddr, &tls.Config{RootCAs: l.roots, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{id.Cert}, NextProtos: []string{wire.ALPNClientControl}}, quicconf.Control())
	if err != nil {
		t.Fatalf("dial control: %v", err)
	}
	st, err := conn.OpenStreamSync(hctx)
	if err == nil {
		token := clientTokens[int(l.joined.Add(1)-1)/control.DefaultSessionsPerToken]
		_, err = wire.Handshake(hctx, st, &wire.Hello{Token: token, Version: "test"}, wire.ControlToClient)
	}
	if err != nil {
		t.Fatalf("hello: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = conn.CloseWithError(0, ""); <-done })
	go func() {
		defer close(done)
		for {
			if _, err := wire.Read(st, wire.ControlToClient); err != nil {
				return
			}
		}
	}()
	return &ctlSession{conn: conn, st: st}
}

func (s *ctlSession) send(t *testing.T, m wire.Message) {
	t.Helper()
	if err := wire.Write(s.st, m); err != nil {
		t.Fatalf("send %s: %v", wire.Kind(m), err)
	}
}

// relayEndpoints is the relay's table: how many destinations each
// authorized endpoint has.
func relayEndpoints(srv *relay.Server) map[string]int {
	out := map[string]int{}
	for _, ep := range srv.Status().Endpoints {
		out[ep.Name] = ep.Destinations
	}
	return out
}

// waitRelay waits until ok holds of the relay's table. The relay's link
// to control must stay up meanwhile: a link that broke and was dialed
// again fails the test.
func (l *linked) waitRelay(t *testing.T, ctx context.Context, what string, ok func(map[string]int) bool) {
	t.Helper()
	tick := time.Now()
	for !ok(relayEndpoints(l.relay)) {
		if time.Since(tick) > 5*time.Second { // for a test that fails slowly
			tick = time.Now()
			t.Logf("waiting: the relay has %d endpoints, control %d", len(relayEndpoints(l.relay)), len(l.ctl.Status().Endpoints))
		}
		if n := l.dials.Load(); n > 1 {
			t.Fatalf("the relay's link to control broke (the relay dialed %d times) before its table %s", n, what)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the relay's table never %s (it has %d endpoints; control %d)", what, len(relayEndpoints(l.relay)), len(l.ctl.Status().Endpoints))
		case <-l.relay.Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pairFlows sends raw frames from a to b until one arrives, failing when
// none has by the end of ctx.
func pairFlows(t *testing.T, ctx context.Context, l *linked, a, b *relayClient, atB <-chan rawArrival) {
	t.Helper()
	for seq := uint32(0); ; seq++ {
		if _, err := a.conn.WriteTo(rawPayload(seq), a.conn.PeerAddr(l.relayAddr, b.id.ID)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-atB:
			if got.from != a.id.ID {
				t.Fatalf("b got a frame from %s, want a", got.from.Short())
			}
			return
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no frame from a reached b through the relay")
		}
	}
}
