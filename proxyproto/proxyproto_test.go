package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
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

func TestParseSourceTakesOnlyAnAddressAndPort(t *testing.T) {
	for from, want := range map[string]string{
		"192.0.2.1:56324":          "192.0.2.1:56324",
		"[2001:db8::1]:80":         "[2001:db8::1]:80",
		"[fe80::1%eth0]:80":        "[fe80::1%eth0]:80", // the zone is dropped by Header
		"[::ffff:192.0.2.1]:1":     "[::ffff:192.0.2.1]:1",
		"":                         "",
		"garbage":                  "",
		"192.0.2.1":                "",
		"192.0.2.1:http":           "",
		"192.0.2.1:65536":          "",
		"192.0.2.1:0":              "",
		"0.0.0.0:1":                "",
		"[::]:1":                   "",
		"host.example:80":          "",
		" 192.0.2.1:1":             "",
		"192.0.2.1:1\r\nPROXY":     "",
		"192.0.2.1:1 198.51.100.1": "",
	} {
		ap, err := ParseSource(from)
		if want == "" {
			if err == nil {
				t.Errorf("ParseSource(%q) = %v, want an error", from, ap)
			}
			continue
		}
		if err != nil || ap.String() != want {
			t.Errorf("ParseSource(%q) = %v, %v; want %s", from, ap, err, want)
		}
	}
	if _, err := ParseSource(strings.Repeat("x", 1<<16)); err == nil || len(err.Error()) > 200 {
		t.Errorf("a 64 KiB claim: error %.100q... (%d bytes), want a short one", err, len(err.Error()))
	}
}

var v1Line = regexp.MustCompile(`^PROXY (TCP4|TCP6) ([0-9a-f.:]+) ([0-9a-f.:]+) (0|[1-9][0-9]{0,4}) (0|[1-9][0-9]{0,4})\r\n$`)

// parseHeader reads a header as a strict receiver would, following the
// specification: one v1 line of at most 107 bytes, or a v2 PROXY header
// for TCP over IPv4 or IPv6 whose length field covers exactly the rest.
func parseHeader(t *testing.T, h []byte) (src, dst netip.AddrPort) {
	t.Helper()
	if bytes.HasPrefix(h, sig) {
		if len(h) < 16 || h[12] != 0x21 {
			t.Fatalf("v2 header % x: bad version/command", h)
		}
		n := int(binary.BigEndian.Uint16(h[14:16]))
		body := h[16:]
		if len(body) != n {
			t.Fatalf("v2 header % x: length field %d, %d bytes follow", h, n, len(body))
		}
		var alen int
		switch {
		case h[13] == 0x11 && n == 12:
			alen = 4
		case h[13] == 0x21 && n == 36:
			alen = 16
		default:
			t.Fatalf("v2 header % x: family %#x with %d address bytes", h, h[13], n)
		}
		s, _ := netip.AddrFromSlice(body[:alen])
		d, _ := netip.AddrFromSlice(body[alen : 2*alen])
		sp := binary.BigEndian.Uint16(body[2*alen:])
		dp := binary.BigEndian.Uint16(body[2*alen+2:])
		return netip.AddrPortFrom(s, sp), netip.AddrPortFrom(d, dp)
	}
	if len(h) > 107 {
		t.Fatalf("v1 header %q is longer than 107 bytes", h)
	}
	m := v1Line.FindSubmatch(h)
	if m == nil {
		t.Fatalf("v1 header %q is malformed", h)
	}
	s, err1 := netip.ParseAddr(string(m[2]))
	d, err2 := netip.ParseAddr(string(m[3]))
	sp, err3 := strconv.ParseUint(string(m[4]), 10, 16)
	dp, err4 := strconv.ParseUint(string(m[5]), 10, 16)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatalf("v1 header %q: %v", h, err)
	}
	if four := string(m[1]) == "TCP4"; s.Is4() != four || d.Is4() != four {
		t.Fatalf("v1 header %q: addresses of the wrong family", h)
	}
	return netip.AddrPortFrom(s, uint16(sp)), netip.AddrPortFrom(d, uint16(dp))
}

// FuzzHeader checks that whatever a source claims as connect.from, either
// ParseSource refuses it or the header is well formed and carries exactly
// the claimed address and port: a claim cannot inject into the header.
func FuzzHeader(f *testing.F) {
	for _, from := range []string{
		"192.0.2.1:56324", "[2001:db8::1]:1234", "[fe80::1%eth0]:80", "[fe80::1%a b\r\nPROXY]:80",
		"[::ffff:192.0.2.1]:1", "192.0.2.1:1\r\nPROXY TCP4 1.1.1.1 1.1.1.1 1 1", "garbage", "",
	} {
		for _, dst := range []string{"198.51.100.2", "2001:db8::2"} {
			f.Add(from, netip.MustParseAddr(dst).AsSlice(), uint16(443), false)
			f.Add(from, netip.MustParseAddr(dst).AsSlice(), uint16(443), true)
		}
	}
	f.Fuzz(func(t *testing.T, from string, dstIP []byte, dstPort uint16, v2 bool) {
		src, err := ParseSource(from)
		if err != nil {
			return
		}
		dstAddr, ok := netip.AddrFromSlice(dstIP)
		if !ok {
			return
		}
		dst := netip.AddrPortFrom(dstAddr, dstPort)
		version := "v1"
		if v2 {
			version = "v2"
		}
		h, err := Header(version, src, dst)
		if err != nil {
			t.Fatalf("Header(%s, %v, %v): %v", version, src, dst, err)
		}
		gotSrc, gotDst := parseHeader(t, h)
		// What a receiver should read: addresses without zones, IPv4 as
		// IPv4, and both as IPv6 when the families differ.
		s, d := src.Addr().Unmap().WithZone(""), dst.Addr().Unmap().WithZone("")
		if s.Is4() != d.Is4() {
			s, d = netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
		}
		if gotSrc != netip.AddrPortFrom(s, src.Port()) || gotDst != netip.AddrPortFrom(d, dst.Port()) {
			t.Fatalf("%s header for from %q: carries %v → %v, want %v → %v", version, from, gotSrc, gotDst, s, d)
		}
	})
}
