package traversal

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// receivedTTL sends one datagram through s with ttl and returns the TTL it
// arrived with.
func receivedTTL(t *testing.T, s *udpSock, ttl int) int {
	t.Helper()
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	pc := ipv4.NewPacketConn(rc)
	if err := pc.SetControlMessage(ipv4.FlagTTL, true); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteTo([]byte{0x02}, rc.LocalAddr().(*net.UDPAddr).AddrPort(), ttl); err != nil {
		t.Fatal(err)
	}
	_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 100)
	_, cm, _, err := pc.ReadFrom(b)
	if err != nil || cm == nil {
		t.Fatalf("read: %v, %v", cm, err)
	}
	return cm.TTL
}

func TestProbeTTLIsSetPerPacketOnIPv4AndDualStackSockets(t *testing.T) {
	for _, network := range []string{"udp4", "udp"} {
		c, err := net.ListenUDP(network, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := newUDPSock(c)
		if got := receivedTTL(t, s, 2); got != 2 {
			t.Errorf("%s: low-TTL probe arrived with TTL %d", network, got)
		}
		if got := receivedTTL(t, s, 0); got <= 2 {
			t.Errorf("%s: a normal packet after it arrived with TTL %d: the socket's TTL was changed", network, got)
		}
		c.Close()
	}
}

func TestIPv4SocketRefusesIPv6Destinations(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := newUDPSock(c).WriteTo([]byte{2}, netip.MustParseAddrPort("[2001:db8::1]:1"), 0); err == nil {
		t.Fatal("sent to IPv6 from an IPv4 socket")
	}
}

// A dual-stack direct socket opens stateful IPv6 firewalls with low
// hop-limit packets just as it opens IPv4 NATs with low-TTL ones.
func TestProbeHopLimitIsSetPerPacketOnIPv6(t *testing.T) {
	rc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer rc.Close()
	pc := ipv6.NewPacketConn(rc)
	if err := pc.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := newUDPSock(c)
	to := rc.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, ttl := range []int{2, 0} {
		if err := s.WriteTo([]byte{0x02}, to, ttl); err != nil {
			t.Fatal(err)
		}
		_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 100)
		_, cm, _, err := pc.ReadFrom(b)
		if err != nil || cm == nil {
			t.Fatalf("read: %v, %v", cm, err)
		}
		if ttl == 2 && cm.HopLimit != 2 {
			t.Errorf("low hop-limit probe arrived with hop limit %d", cm.HopLimit)
		}
		if ttl == 0 && cm.HopLimit <= 2 {
			t.Errorf("a normal packet after it arrived with hop limit %d: the socket's hop limit was changed", cm.HopLimit)
		}
	}
}
