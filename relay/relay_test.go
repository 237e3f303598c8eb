package relay_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/relayconn"
	"github.com/connetd/connetd/wire"
)

func udp(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// relayClient is a client's relay socket; link connects it to the relay.
type relayClient struct {
	id   *identity.Identity
	tr   *quic.Transport
	conn *relayconn.Conn // its socket, for tests that send raw frames
	qc   *quic.Conn      // its link to the relay
}

func newRelayClient(t *testing.T) *relayClient {
	t.Helper()
	id, err := identity.New("client")
	if err != nil {
		t.Fatal(err)
	}
	return &relayClient{id: id}
}

func TestRelayForwardsOnlyPairsControlAuthorized(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	relayID, err := identity.New("relay")
	if err != nil {
		t.Fatal(err)
	}
	ru := udp(t)
	srv := relay.New(relay.Config{Identity: relayID, Conn: ru, Logger: slog.New(slog.DiscardHandler)})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	defer func() { cancel(); <-done; srv.Close() }()
	relayAddr := ru.LocalAddr().(*net.UDPAddr).AddrPort()

	// a may reach b; c is admitted (for another endpoint) but not to b.
	a, b, c := twoEndpoints(t, ctx, srv, relayID, relayAddr)

	ln, err := b.tr.Listen(b.id.ServerTLS(wire.ALPNPeer, func(identity.ID) bool { return true }), quicconf.Peer())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			_ = conn.CloseWithError(0, "")
		}
	}()
	dialB := func(from *relayClient, timeout time.Duration) error {
		dctx, dcancel := context.WithTimeout(ctx, timeout)
		defer dcancel()
		conn, err := from.tr.Dial(dctx, from.conn.PeerAddr(relayAddr, b.id.ID),
			from.id.ClientTLS(wire.ALPNPeer, func(got identity.ID) bool { return got == b.id.ID }), quicconf.Peer())
		if err != nil {
			return err
		}
		_ = conn.CloseWithError(0, "")
		return nil
	}
	changed := srv.Changed()
	if err := dialB(a, 5*time.Second); err != nil {
		t.Fatalf("authorized source could not reach its destination through the relay: %v", err)
	}
	select {
	case <-changed: // forwarded bytes count as a change
	case <-time.After(2 * time.Second):
		t.Fatal("relayed traffic did not signal Changed")
	}
	dropped := srv.Status().Dropped
	err = dialB(c, 2*time.Second)
	if err == nil {
		t.Fatal("relay spliced a client to a destination of another endpoint")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		var idle *quic.IdleTimeoutError
		if !errors.As(err, &idle) {
			t.Fatalf("unauthorized dial failed in an unexpected way: %v", err)
		}
	}
	if srv.Status().Dropped <= dropped {
		t.Fatal("relay did not count the unauthorized frames as dropped")
	}
}

func (rc *relayClient) link(t *testing.T, ctx context.Context, relayID *identity.Identity, relayAddr netip.AddrPort) {
	t.Helper()
	conn := relayconn.New(udp(t))
	conn.SetRelays([]netip.AddrPort{relayAddr})
	rc.conn = conn
	rc.tr = &quic.Transport{Conn: conn}
	t.Cleanup(func() { rc.tr.Close() })
	qc, err := rc.tr.Dial(ctx, net.UDPAddrFromAddrPort(relayAddr),
		rc.id.ClientTLS(wire.ALPNClientRelay, func(got identity.ID) bool { return got == relayID.ID }), quicconf.Control())
	if err != nil {
		t.Fatalf("connect to relay: %v", err)
	}
	rc.qc = qc
	st, err := qc.AcceptUniStream(ctx)
	if err != nil {
		t.Fatalf("relay did not welcome an authorized client: %v", err)
	}
	if _, err := wire.Read(st, wire.RelayToClient); err != nil {
		t.Fatalf("relay welcome: %v", err)
	}
}

// tlsBadCertificate is the QUIC error that closes a handshake in which
// the other side's certificate was refused: crypto error 0x100 plus TLS's
// bad_certificate alert (42), which crypto/tls sends when
// VerifyPeerCertificate (identity's pinning) returns an error.
const tlsBadCertificate = quic.TransportErrorCode(0x100 + 42)

// refusedByTLS waits for the outcome of a dial to the relay and reports
// whether the relay refused the client's certificate. In TLS 1.3 the
// client's handshake ends before the server has checked the client's
// certificate, so the dial may succeed and the refusal close it after.
func refusedByTLS(ctx context.Context, qc *quic.Conn, err error) (bool, error) {
	if err == nil {
		select {
		case <-qc.Context().Done():
			err = context.Cause(qc.Context())
		case <-ctx.Done():
			return false, errors.New("the connection is still open")
		}
	}
	var terr *quic.TransportError
	return errors.As(err, &terr) && terr.Remote && terr.ErrorCode == tlsBadCertificate, err
}

// The relay's TLS pinning admits only clients that control named in an
// endpoint: a client no endpoint names is refused in the handshake, and
// the same client, once named, is welcomed by the same relay.
func TestRelayRefusesClientsControlNeverNamed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	relayID, err := identity.New("relay")
	if err != nil {
		t.Fatal(err)
	}
	ru := udp(t)
	srv := startRelay(t, relay.Config{Identity: relayID, Conn: ru})
	relayAddr := ru.LocalAddr().(*net.UDPAddr).AddrPort()
	stranger, src, dst := newRelayClient(t), newRelayClient(t), newRelayClient(t)
	srv.SetAuth(&wire.RelayAuth{Endpoints: []wire.RelayEndpoint{
		{Endpoint: "e", Sources: []identity.ID{src.id.ID}, Destinations: []identity.ID{dst.id.ID}},
	}})

	tr := &quic.Transport{Conn: relayconn.New(udp(t))}
	defer tr.Close()
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	qc, err := tr.Dial(dctx, net.UDPAddrFromAddrPort(relayAddr),
		stranger.id.ClientTLS(wire.ALPNClientRelay, func(got identity.ID) bool { return got == relayID.ID }), quicconf.Control())
	refused, err := refusedByTLS(dctx, qc, err)
	dcancel()
	if !refused {
		t.Fatalf("client no endpoint names: %v; want the relay to refuse its certificate (%v)", err, tlsBadCertificate)
	}
	if n := len(srv.Status().Clients); n != 0 {
		t.Fatalf("relay registered %d clients, want 0", n)
	}

	srv.SetAuth(&wire.RelayAuth{Endpoints: []wire.RelayEndpoint{
		{Endpoint: "e", Sources: []identity.ID{stranger.id.ID}, Destinations: []identity.ID{dst.id.ID}},
	}})
	stranger.link(t, ctx, relayID, relayAddr) // fails the test unless welcomed
	if cs := srv.Status().Clients; len(cs) != 1 || cs[0].ID != stranger.id.ID.String() {
		t.Fatalf("relay clients %+v, want only the client just named", cs)
	}
}
