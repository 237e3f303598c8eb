package control

import (
	"net/netip"
)

// privatePrefixes are ranges a peer elsewhere cannot reach: its probes to
// them would go to whatever sits at that address on its own network.
var privatePrefixes = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier NAT
	netip.MustParsePrefix("fc00::/7"),
}

// probeTargets are the candidates of client of that control passes to
// client to: the addresses to's punch probes may go to. Candidates are the
// reporter's own word, so they are filtered here; otherwise a client could
// make its peers send probes to any address it names (docs/protocol.md §8):
//
//   - the address control observed for of always passes (the network
//     vouched for it: of's QUIC handshake came from there);
//   - so does any port of that address (a port mapping on of's router);
//   - unspecified, multicast, link-local and broadcast addresses never do;
//   - loopback and private addresses pass only when both clients were
//     observed at the same address: then they share a host or a NAT, and
//     the addresses mean the same on both sides;
//   - other (public) addresses pass.
func probeTargets(of, to *session) []string {
	obs := observedAddr(of.observed)
	shared := obs.IsValid() && obs == observedAddr(to.observed)
	out := make([]string, 0, len(of.direct))
	for _, c := range of.direct {
		ap, err := netip.ParseAddrPort(c)
		if err != nil {
			continue
		}
		if a := ap.Addr().Unmap(); a == obs || allowedTarget(a, shared) {
			out = append(out, c)
		}
	}
	return out
}

func observedAddr(s string) netip.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func allowedTarget(a netip.Addr, shared bool) bool {
	switch {
	case !a.IsValid(), a.IsUnspecified(), a.IsMulticast(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(),
		a.IsInterfaceLocalMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return false
	case a.IsLoopback(), isPrivate(a):
		return shared
	}
	return true
}

func isPrivate(a netip.Addr) bool {
	for _, p := range privatePrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
