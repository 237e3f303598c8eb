package relay_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/wire"
)

// startRelay runs a relay on u until the test ends.
func startRelay(t *testing.T, cfg relay.Config) *relay.Server {
	t.Helper()
	if cfg.Identity == nil {
		id, err := identity.New("relay")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Identity = id
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv := relay.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	return srv
}

// serveEcho makes rc accept peer connections and echo every stream.
func serveEcho(t *testing.T, ctx context.Context, rc *relayClient) {
	t.Helper()
	ln, err := rc.tr.Listen(rc.id.ServerTLS(wire.ALPNPeer, func(identity.ID) bool { return true }), quicconf.Peer())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			st, err := conn.AcceptStream(ctx)
			if err != nil {
				continue
			}
			buf := make([]byte, 64<<10)
			for {
				n, err := st.Read(buf)
				if n > 0 {
					if _, werr := st.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			_ = st.Close()
		}
	}()
}

// dialPeer opens a relayed connection from rc to peer through the relay
// at relayAddr.
func dialPeer(ctx context.Context, rc *relayClient, relayAddr net.Addr, peer identity.ID) (*quic.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ra := relayAddr.(*net.UDPAddr).AddrPort()
	return rc.tr.Dial(dctx, rc.conn.PeerAddr(ra, peer),
		rc.id.ClientTLS(wire.ALPNPeer, func(got identity.ID) bool { return got == peer }), quicconf.Peer())
}

// twoEndpoints authorizes a (source) and b (destination) of endpoint "e",
// and c and another client of endpoint "other", and links a, b and c to
// the relay: c is admitted, but not to a or b.
func twoEndpoints(t *testing.T, ctx context.Context, srv *relay.Server, relayID *identity.Identity, relayAddr netip.AddrPort) (a, b, c *relayClient) {
	t.Helper()
	a, b, c, d := newRelayClient(t), newRelayClient(t), newRelayClient(t), newRelayClient(t)
	srv.SetAuth(&wire.RelayAuth{Endpoints: []wire.RelayEndpoint{
		{Endpoint: "e", Sources: []identity.ID{a.id.ID}, Destinations: []identity.ID{b.id.ID}},
		{Endpoint: "other", Sources: []identity.ID{c.id.ID}, Destinations: []identity.ID{d.id.ID}},
	}})
	for _, rc := range []*relayClient{a, b, c} {
		rc.link(t, ctx, relayID, relayAddr)
	}
	return a, b, c
}
