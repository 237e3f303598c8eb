package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/relayconn"
	"github.com/connetd/connetd/wire"
)

// Who may connect to whom, checked at two levels: TLS pinning in the
// handshake (identity.PinnedVerifier: the certificate is one control
// vouched for, in the role the connection needs), then, on a destination,
// admitPeer when the connection is accepted (the peer is still a source of
// ours) and serveStream for each stream (the peer is a source of that
// endpoint).

// tlsBadCertificate is the QUIC error that ends a handshake in which one
// side refused the other's certificate: crypto error 0x100 plus TLS's
// bad_certificate alert (42), which crypto/tls sends when
// VerifyPeerCertificate (identity's pinning) returns an error.
const tlsBadCertificate = quic.TransportErrorCode(0x100 + 42)

// closedWith waits until a dialed connection is closed and returns why, or
// nil if it is still open when ctx ends. In TLS 1.3 the client's handshake
// ends before the server has checked the client's certificate, so a
// refusal may close a connection whose dial succeeded.
func closedWith(ctx context.Context, conn *quic.Conn, dialErr error) error {
	if dialErr != nil {
		return dialErr
	}
	select {
	case <-conn.Context().Done():
		return context.Cause(conn.Context())
	case <-ctx.Done():
		return nil
	}
}

// refusedInHandshake reports whether err is the other side refusing our
// certificate.
func refusedInHandshake(err error) bool {
	var terr *quic.TransportError
	return errors.As(err, &terr) && terr.Remote && terr.ErrorCode == tlsBadCertificate
}

// rawPeer is a client the test plays itself over the wire protocol: it
// holds its identity's key, so it can connect as itself, or show another
// certificate where a real client would show its own.
type rawPeer struct {
	id *identity.Identity
	st *quic.Stream // its control stream
}

func (l *lab) rawPeer(t *testing.T) *rawPeer {
	t.Helper()
	id, err := identity.New("raw")
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp(t)}
	t.Cleanup(func() { _ = tr.Close() })
	ctrl, err := net.ResolveUDPAddr("udp", l.ctrlAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(l.ctx, 5*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx, ctrl, &tls.Config{RootCAs: l.roots, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{id.Cert}, NextProtos: []string{wire.ALPNClientControl}}, quicconf.Control())
	if err != nil {
		t.Fatalf("connect to control: %v", err)
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.Write(st, &wire.Hello{Token: "tok"}); err != nil {
		t.Fatal(err)
	}
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m, err := wire.Read(st, wire.ControlToClient); err != nil {
		t.Fatalf("hello: %v", err)
	} else if _, ok := m.(*wire.Welcome); !ok {
		t.Fatalf("hello: %+v, want a welcome", m)
	}
	_ = st.SetReadDeadline(time.Time{})
	// Control ends a session whose messages pile up unread.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := wire.Read(st, wire.ControlToClient); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { _ = conn.CloseWithError(wire.ConnNormal, ""); <-done })
	return &rawPeer{id: id, st: st}
}

func (p *rawPeer) send(t *testing.T, m wire.Message) {
	t.Helper()
	if err := wire.Write(p.st, m); err != nil {
		t.Fatal(err)
	}
}

// linkRelay links a relay socket of p to the lab's relay and returns its
// transport, on which relayed peer connections to p arrive. The relay
// refuses p until control has named it in an endpoint that uses the relay.
func (p *rawPeer) linkRelay(t *testing.T, l *lab) *quic.Transport {
	t.Helper()
	rc := relayconn.New(udp(t))
	rc.SetRelays([]netip.AddrPort{l.relayAddr})
	tr := &quic.Transport{Conn: rc}
	t.Cleanup(func() { _ = tr.Close() })
	link := func() error {
		ctx, cancel := context.WithTimeout(l.ctx, 2*time.Second)
		defer cancel()
		qc, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(l.relayAddr),
			p.id.ClientTLS(wire.ALPNClientRelay, func(id identity.ID) bool { return id == l.relayID }), quicconf.Control())
		if err != nil {
			return err
		}
		st, err := qc.AcceptUniStream(ctx)
		if err == nil {
			_, err = wire.Read(st, wire.RelayToClient)
		}
		if err != nil {
			_ = qc.CloseWithError(wire.ConnNormal, "")
		}
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := link()
		if err == nil {
			return tr
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay never welcomed the test's peer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// serveAsDestination accepts peer connections on ln and echoes each
// stream's bytes after its Connect header, as a destination in front of an
// echo service would, until the test ends.
func serveAsDestination(t *testing.T, ctx context.Context, ln *quic.Listener) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			// Closing the connection ends the stream reads below.
			stop := context.AfterFunc(ctx, func() { _ = conn.CloseWithError(wire.ConnShutdown, "") })
			wg.Go(func() {
				defer stop()
				for {
					st, err := conn.AcceptStream(ctx)
					if err != nil {
						return
					}
					if _, err := wire.Read(st, wire.PeerStream); err != nil {
						st.CancelRead(wire.StreamBadRequest)
						st.CancelWrite(wire.StreamBadRequest)
						continue
					}
					_, _ = io.Copy(st, st)
					_ = st.Close()
				}
			})
		}
	})
}

// streamEcho opens a stream for endpoint on conn, as a source does, sends
// msg and half-closes, and returns what comes back.
func streamEcho(conn *quic.Conn, endpoint, msg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return "", err
	}
	_ = st.SetDeadline(time.Now().Add(5 * time.Second))
	if err := wire.Write(st, &wire.Connect{Endpoint: endpoint, From: "127.0.0.1:1"}); err != nil {
		return "", err
	}
	if _, err := io.WriteString(st, msg); err != nil {
		return "", err
	}
	_ = st.Close()
	got, err := io.ReadAll(st)
	return string(got), err
}

// directAddr waits until c has registered with control and returns the
// address of its direct socket, where it accepts peers.
func directAddr(t *testing.T, c *client.Client) *net.UDPAddr {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if obs := c.Status().Observed; obs != "" {
			ua, err := net.ResolveUDPAddr("udp", obs)
			if err != nil {
				t.Fatal(err)
			}
			return ua
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("client never registered with control")
	return nil
}

// waitSource waits until c does (want) or does not know id as a source of
// its destination name.
func waitSource(t *testing.T, c *client.Client, name string, id identity.ID, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		known := false
		for _, d := range c.Status().Destinations {
			for _, p := range d.Peers {
				known = known || (d.Name == name && p.ID == id.String())
			}
		}
		if known == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("destination %s: source %s known is not %v: %+v", name, id.Short(), want, c.Status().Destinations)
}

// dialPeer connects from a fresh socket as id to addr, pinning the
// certificate of want.
func dialPeer(t *testing.T, ctx context.Context, id *identity.Identity, addr *net.UDPAddr, want identity.ID) (*quic.Conn, error) {
	t.Helper()
	tr := &quic.Transport{Conn: udp(t)}
	t.Cleanup(func() { _ = tr.Close() })
	return tr.Dial(ctx, addr, id.ClientTLS(wire.ALPNPeer, func(got identity.ID) bool { return got == want }), quicconf.Peer())
}

// A destination's pinning refuses, in the handshake, a peer whose
// certificate control never vouched for, while the source control named
// reaches it.
func TestDestinationPinningRefusesAnUnvouchedCertificate(t *testing.T) {
	l := newLab(t)
	svc := echoServer(t)
	dst := l.client("dst", client.Config{}, func(c *client.Client) {
		must(t, c.AddDestination("svc", client.DestinationConfig{Addr: svc}))
	})
	addr := freeTCP(t)
	src := l.client("src", client.Config{}, func(c *client.Client) {
		must(t, c.AddSource("svc", client.SourceConfig{Addr: addr}))
	})
	waitPath(t, src, "svc", "direct")
	echo(t, addr, "from the source control vouched for")

	stranger, err := identity.New("stranger")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := dialPeer(t, ctx, stranger, directAddr(t, dst), dst.ID())
	if err := closedWith(ctx, conn, err); !refusedInHandshake(err) {
		t.Fatalf("peer control never vouched for: %v; want the destination to refuse its certificate (%v)", err, tlsBadCertificate)
	}
}

// A peer the test plays is a source of "svc" and then stops being one.
// While a source, the destination admits it, and its streams reach "svc"
// but not "other", an endpoint it is no source of. Once withdrawn, pinning
// refuses its (vouched-for, key-holding) certificate in the handshake,
// and admitPeer refuses a connection whose handshake passed before: the
// two checks are told apart by their errors.
func TestDestinationAdmitsOnlyPeersThatAreStillItsSources(t *testing.T) {
	l := newLab(t)
	svc := echoServer(t)
	dst := l.client("dst", client.Config{}, func(c *client.Client) {
		must(t, c.AddDestination("svc", client.DestinationConfig{Addr: svc}))
		must(t, c.AddDestination("other", client.DestinationConfig{Addr: svc}))
	})
	dstAddr := directAddr(t, dst)
	p := l.rawPeer(t)
	p.send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: "any"})
	waitSource(t, dst, "svc", p.id.ID, true)

	// The test's own listener stands in for a handshake that pinning let
	// through: what it accepts goes to admitPeer, as from the destination's
	// accept loop.
	gate, err := identity.New("gate")
	if err != nil {
		t.Fatal(err)
	}
	gateTr := &quic.Transport{Conn: udp(t)}
	t.Cleanup(func() { _ = gateTr.Close() })
	gateLn, err := gateTr.Listen(gate.ServerTLS(wire.ALPNPeer, func(identity.ID) bool { return true }), quicconf.Peer())
	if err != nil {
		t.Fatal(err)
	}
	defer gateLn.Close()
	admit := func(ctx context.Context) *quic.Conn {
		t.Helper()
		conn, err := dialPeer(t, ctx, p.id, gateTr.Conn.LocalAddr().(*net.UDPAddr), gate.ID)
		if err != nil {
			t.Fatal(err)
		}
		accepted, err := gateLn.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		dst.AdmitPeer(accepted)
		return conn
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	conn := admit(ctx)
	if got, err := streamEcho(conn, "svc", "admitted"); err != nil || got != "admitted" {
		t.Fatalf("stream of an admitted source: %q, %v", got, err)
	}
	var serr *quic.StreamError
	if _, err := streamEcho(conn, "other", "not mine"); !errors.As(err, &serr) || !serr.Remote || serr.ErrorCode != wire.StreamUnknownEndpoint {
		t.Fatalf("stream for an endpoint the peer is no source of: %v; want it reset with StreamUnknownEndpoint", err)
	}
	// Through the destination's own listener, pinning lets the source in.
	direct, err := dialPeer(t, ctx, p.id, dstAddr, dst.ID())
	if err != nil {
		t.Fatalf("source dialing the destination: %v", err)
	}
	if got, err := streamEcho(direct, "svc", "pinned"); err != nil || got != "pinned" {
		t.Fatalf("stream through the destination's listener: %q, %v", got, err)
	}

	p.send(t, &wire.Withdraw{Endpoint: "svc", Role: "source"})
	waitSource(t, dst, "svc", p.id.ID, false)
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	refused, err := dialPeer(t, rctx, p.id, dstAddr, dst.ID())
	if err := closedWith(rctx, refused, err); !refusedInHandshake(err) {
		t.Fatalf("a peer that is no longer a source: %v; want pinning to refuse its certificate (%v)", err, tlsBadCertificate)
	}
	late := admit(ctx)
	err = closedWith(rctx, late, nil)
	var app *quic.ApplicationError
	if !errors.As(err, &app) || !app.Remote || app.ErrorCode != wire.ConnUnauthorized || app.ErrorMessage != "not a source of this client" {
		t.Fatalf("connection of a peer no longer a source, past the handshake: %v; want admitPeer to close it with ConnUnauthorized", err)
	}
}

// A source pins the destination control named. A peer answering for that
// destination (at its relay address, through the relay) with another
// certificate is refused in the handshake; the same destination showing
// its own certificate is then reached.
func TestSourceRefusesADestinationShowingAnotherCertificate(t *testing.T) {
	l := newLab(t)
	addr := freeTCP(t)
	src := l.client("src", client.Config{}, func(c *client.Client) {
		must(t, c.AddSource("imp", client.SourceConfig{Addr: addr, Route: "relay"}))
	})
	p := l.rawPeer(t)
	p.send(t, &wire.Announce{Endpoint: "imp", Role: "destination", Route: "relay"})
	tr := p.linkRelay(t, l)

	impostor, err := identity.New("impostor")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tr.Listen(impostor.ServerTLS(wire.ALPNPeer, func(identity.ID) bool { return true }), quicconf.RelayedPeer())
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept(l.ctx)
			if err != nil {
				return
			}
			select {
			case accepted <- struct{}{}:
			default:
			}
			_ = conn.CloseWithError(wire.ConnNormal, "")
		}
	}()
	// The source's dial reached the impostor and its pinning refused the
	// certificate (client side: the error is local, and says why).
	deadline := time.Now().Add(10 * time.Second)
	for !srcRefusedCertificate(l.logs.String()) {
		if time.Now().After(deadline) {
			ln.Close()
			<-done
			t.Fatal("the source never refused the impostor's certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ln.Close()
	<-done
	select {
	case <-accepted:
		t.Fatal("a handshake with the impostor's certificate completed")
	default:
	}
	for _, s := range src.Status().Sources {
		if len(s.Peers) != 1 || s.Peers[0].Path != "none" {
			t.Fatalf("source %+v, want its one destination without a path", s)
		}
	}

	real, err := tr.Listen(p.id.ServerTLS(wire.ALPNPeer, func(id identity.ID) bool { return id == src.ID() }), quicconf.RelayedPeer())
	if err != nil {
		t.Fatal(err)
	}
	serveAsDestination(t, l.ctx, real)
	waitPath(t, src, "imp", "relay")
	echo(t, addr, "to the destination control named")
}

// srcRefusedCertificate reports whether the source's log has a failed
// peer connection because of a certificate control did not vouch for.
func srcRefusedCertificate(logs string) bool {
	for l := range strings.Lines(logs) {
		if strings.Contains(l, "role=src") && strings.Contains(l, "peer connect failed") && strings.Contains(l, identity.ErrNotPinned.Error()) {
			return true
		}
	}
	return false
}
