// Package proxyproto writes PROXY protocol headers (HAProxy's v1 text and v2
// binary forms), so a destination service learns the original client address.
package proxyproto

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// ParseSource parses the client address a source claims (connect.from):
// an IP address and a TCP port, nothing else, so that no other bytes can
// reach a header. The address is the source's word: any client holding a
// token for the endpoint can claim any address, and only the source ever
// sees the TCP client.
func ParseSource(from string) (netip.AddrPort, error) {
	shown := from
	if len(shown) > 64 {
		shown = shown[:64] + "..."
	}
	ap, err := netip.ParseAddrPort(from)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("client address %q is not an IP address and port: %w", shown, err)
	}
	if ap.Port() == 0 || ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("client address %q cannot be a TCP client's", shown)
	}
	return ap, nil
}

var v2Signature = []byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// Header returns the header for a TCP connection from src to dst.
// version is "v1" or "v2".
func Header(version string, src, dst netip.AddrPort) ([]byte, error) {
	// Zones (fe80::1%eth0) mean nothing to the receiver and break v1 parsers.
	s := netip.AddrPortFrom(src.Addr().Unmap().WithZone(""), src.Port())
	d := netip.AddrPortFrom(dst.Addr().Unmap().WithZone(""), dst.Port())
	if s.Addr().Is4() != d.Addr().Is4() {
		// Mixed families: present both as IPv6, as the spec allows.
		s = netip.AddrPortFrom(netip.AddrFrom16(s.Addr().As16()), s.Port())
		d = netip.AddrPortFrom(netip.AddrFrom16(d.Addr().As16()), d.Port())
	}
	switch version {
	case "v1":
		fam := "TCP6"
		if s.Addr().Is4() {
			fam = "TCP4"
		}
		return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", fam, s.Addr(), d.Addr(), s.Port(), d.Port()), nil
	case "v2":
		b := append([]byte(nil), v2Signature...)
		b = append(b, 0x21) // version 2, PROXY command
		if s.Addr().Is4() {
			b = append(b, 0x11) // AF_INET, STREAM
			b = binary.BigEndian.AppendUint16(b, 12)
			a, c := s.Addr().As4(), d.Addr().As4()
			b = append(b, a[:]...)
			b = append(b, c[:]...)
		} else {
			b = append(b, 0x21) // AF_INET6, STREAM
			b = binary.BigEndian.AppendUint16(b, 36)
			a, c := s.Addr().As16(), d.Addr().As16()
			b = append(b, a[:]...)
			b = append(b, c[:]...)
		}
		b = binary.BigEndian.AppendUint16(b, s.Port())
		b = binary.BigEndian.AppendUint16(b, d.Port())
		return b, nil
	}
	return nil, fmt.Errorf("proxy protocol version %q is neither v1 nor v2", version)
}
