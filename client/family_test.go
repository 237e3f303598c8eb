package client

import (
	"net"
	"testing"
)

func TestAddrFamilyNamesTheDirectPathsFamily(t *testing.T) {
	for _, c := range []struct {
		addr net.Addr
		want string
	}{
		{&net.UDPAddr{IP: net.ParseIP("198.51.100.7"), Port: 1}, "ipv4"},
		{&net.UDPAddr{IP: net.ParseIP("::ffff:198.51.100.7"), Port: 1}, "ipv4"}, // accepted on a dual-stack socket
		{&net.UDPAddr{IP: net.ParseIP("2001:db8::7"), Port: 1}, "ipv6"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 1}, ""},
	} {
		if got := addrFamily(c.addr); got != c.want {
			t.Errorf("addrFamily(%v) = %q, want %q", c.addr, got, c.want)
		}
	}
}
