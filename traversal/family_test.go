package traversal

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/connetd/connetd/wire"
)

// A wildcard-bound dual-stack direct socket (direct-addr ":19192") offers
// its IPv6 addresses and punches toward the peer's; an IPv4-bound one
// does neither.
func TestDualStackSocketOffersAndProbesIPv6(t *testing.T) {
	v4 := netip.MustParseAddr("10.1.2.3")
	v6 := netip.MustParseAddr("2001:db8:5::10")
	peer := &wire.Punch{Direct: []string{"198.51.100.7:4000", "[2001:db8:7::10]:19192", "10.7.0.10:19192"}}
	for _, c := range []struct {
		network string
		cands   []netip.Addr
		peer    []string
	}{
		{"udp", []netip.Addr{v4, v6}, []string{"198.51.100.7:4000", "[2001:db8:7::10]:19192", "10.7.0.10:19192"}},
		{"udp4", []netip.Addr{v4}, []string{"198.51.100.7:4000", "10.7.0.10:19192"}},
	} {
		u, err := net.ListenUDP(c.network, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		tr := New(Config{Conn: u})
		tr.local = []netip.Addr{v4, v6}
		port := uint16(u.LocalAddr().(*net.UDPAddr).Port)
		var want []string
		for _, a := range c.cands {
			want = append(want, netip.AddrPortFrom(a, port).String())
		}
		if got := tr.Candidates(); !slices.Equal(got, want) {
			t.Errorf("%s: candidates %v, want %v", c.network, got, want)
		}
		addrs, vouched := tr.peerAddrs(peer)
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if !vouched || !slices.Equal(got, c.peer) {
			t.Errorf("%s: probes %v (vouched %v), want %v", c.network, got, vouched, c.peer)
		}
	}
}
