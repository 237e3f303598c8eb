package proxyproto

import (
	"bytes"
	"net/netip"
	"testing"
)

// The expected bytes below are written out from the HAProxy PROXY protocol
// specification (doc/proxy-protocol.txt), not computed.

var sig = []byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A} // "\r\n\r\n\0\r\nQUIT\n"

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestHeader(t *testing.T) {
	ap := netip.MustParseAddrPort
	cases := []struct {
		name     string
		version  string
		src, dst string
		want     []byte
	}{
		{"v1 IPv4", "v1", "192.0.2.1:56324", "198.51.100.2:443",
			[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n")},
		{"v1 IPv6", "v1", "[2001:db8::1]:1234", "[2001:db8::2]:80",
			[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n")},
		{"v1 IPv4-mapped is IPv4", "v1", "[::ffff:192.0.2.1]:1", "[::ffff:198.51.100.2]:2",
			[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n")},
		{"v1 mixed families as IPv6", "v1", "192.0.2.1:1", "[2001:db8::2]:2",
			[]byte("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n")},
		{"v2 IPv4", "v2", "192.0.2.1:56324", "198.51.100.2:443", cat(sig,
			[]byte{0x21},       // version 2, command PROXY
			[]byte{0x11},       // AF_INET, SOCK_STREAM
			[]byte{0x00, 0x0C}, // 12 address bytes follow
			[]byte{192, 0, 2, 1},
			[]byte{198, 51, 100, 2},
			[]byte{0xDC, 0x04}, // 56324
			[]byte{0x01, 0xBB}, // 443
		)},
		{"v2 IPv6", "v2", "[2001:db8::1]:1234", "[2001:db8::2]:80", cat(sig,
			[]byte{0x21},
			[]byte{0x21},       // AF_INET6, SOCK_STREAM
			[]byte{0x00, 0x24}, // 36 address bytes follow
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01},
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02},
			[]byte{0x04, 0xD2}, // 1234
			[]byte{0x00, 0x50}, // 80
		)},
		{"v2 IPv4-mapped is IPv4", "v2", "[::ffff:10.0.0.1]:1", "10.0.0.2:2", cat(sig,
			[]byte{0x21, 0x11, 0x00, 0x0C},
			[]byte{10, 0, 0, 1}, []byte{10, 0, 0, 2},
			[]byte{0x00, 0x01}, []byte{0x00, 0x02},
		)},
		{"v2 mixed families as IPv6", "v2", "192.0.2.1:1", "[2001:db8::2]:2", cat(sig,
			[]byte{0x21, 0x21, 0x00, 0x24},
			[]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1},
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02},
			[]byte{0x00, 0x01}, []byte{0x00, 0x02},
		)},
	}
	for _, c := range cases {
		got, err := Header(c.version, ap(c.src), ap(c.dst))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s:\n got % x\nwant % x", c.name, got, c.want)
		}
	}
}

func TestHeaderUnknownVersion(t *testing.T) {
	for _, v := range []string{"", "v3", "V1", "1"} {
		if h, err := Header(v, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2")); err == nil {
			t.Errorf("version %q: header %q", v, h)
		}
	}
}
