package traversal

import (
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpSock sends probes on a UDP socket that quic-go may be using too. A
// low TTL is set per packet with a control message (IP_TTL, or
// IPV6_HOPLIMIT toward IPv6), never with setsockopt, so QUIC packets sent
// at the same moment keep their normal TTL.
type udpSock struct {
	conn *net.UDPConn
	v4   bool // bound to an IPv4 address: IPv6 destinations are unreachable
}

func newUDPSock(c *net.UDPConn) *udpSock {
	la, _ := c.LocalAddr().(*net.UDPAddr)
	return &udpSock{conn: c, v4: la != nil && la.IP.To4() != nil}
}

// WriteTo implements punch.Conn.
func (s *udpSock) WriteTo(b []byte, to netip.AddrPort, ttl int) error {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	if s.v4 && !to.Addr().Is4() {
		return fmt.Errorf("send to %s from an IPv4 socket", to)
	}
	var oob []byte
	if ttl > 0 {
		oob = ttlCmsg(to.Addr().Is4(), ttl)
	}
	if _, _, err := s.conn.WriteMsgUDPAddrPort(b, oob, to); err != nil {
		return fmt.Errorf("send probe to %s: %w", to, err)
	}
	return nil
}

// ttlCmsg is one control message setting the TTL (IPv4, also for
// IPv4-mapped destinations of a dual-stack socket) or hop limit (IPv6).
func ttlCmsg(v4 bool, ttl int) []byte {
	b := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	if v4 {
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_TTL
	} else {
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT
	}
	h.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = int32(ttl)
	return b
}
