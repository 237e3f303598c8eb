package relay_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/wire"
)

// A relay bound to a wildcard address, reached at two of its addresses
// (every 127.x address is local), must answer each client, its own QUIC
// packets and the frames it forwards, from the address that client dialed:
// a client accepts frames only from its relay's address.
func TestRelayOnWildcardAnswersFromTheAddressEachClientDialed(t *testing.T) {
	t.Run("0.0.0.0", func(t *testing.T) { testWildcard(t, "udp4", net.IPv4zero) })
	// A dual-stack socket: IPv4 clients have mapped addresses there.
	t.Run("[::]", func(t *testing.T) { testWildcard(t, "udp", net.IPv6unspecified) })
}

func testWildcard(t *testing.T, network string, ip net.IP) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ru, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	relayID, _ := identity.New("relay")
	srv := startRelay(t, relay.Config{Identity: relayID, Conn: ru})
	port := ru.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	atA := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port)
	atB := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)

	a, b := newRelayClient(t), newRelayClient(t)
	srv.SetAuth(&wire.RelayAuth{Endpoints: []wire.RelayEndpoint{
		{Endpoint: "e", Sources: []identity.ID{a.id.ID}, Destinations: []identity.ID{b.id.ID}},
	}})
	a.link(t, ctx, relayID, atA)
	b.link(t, ctx, relayID, atB)
	serveEcho(t, ctx, b)

	conn, err := dialPeer(ctx, a, net.UDPAddrFromAddrPort(atA), b.id.ID)
	if err != nil {
		t.Fatalf("relayed dial from a client at %s to one at %s: %v", atA, atB, err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("relayed both ways "), 1000)
	if _, err := st.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(st)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through the relay: %d of %d bytes, %v", len(got), len(msg), err)
	}
}
