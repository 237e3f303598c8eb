package relayconn

import (
	"net"
	"net/netip"

	"github.com/connetd/connetd/wire"
)

// ServerConn is the relay server's socket: relay data frames are handed to
// forward as they are read, on quic-go's read goroutine, without a queue;
// everything else goes to quic-go as usual.
type ServerConn struct {
	base
	forward func(frame []byte, from netip.AddrPort)
}

// NewServer wraps udp; forward may modify frame and must not keep it.
func NewServer(udp *net.UDPConn, forward func(frame []byte, from netip.AddrPort)) *ServerConn {
	return &ServerConn{base: base{udp}, forward: forward}
}

// ReadFrom returns the next packet that is not a relay data frame.
func (c *ServerConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.udp.ReadFromUDPAddrPort(b)
		if err != nil {
			return 0, nil, err
		}
		if wire.IsRelayFrame(b[:n]) {
			c.forward(b[:n], unmap(from))
			continue
		}
		if wire.IsProbe(b[:n]) {
			// Reflect requests from clients' direct sockets: the answer
			// tells a client whether its NAT maps per destination.
			if reply := wire.AnswerReflect(b[:n], from); reply != nil {
				_, _ = c.udp.WriteToUDPAddrPort(reply, from)
			}
			continue
		}
		return n, net.UDPAddrFromAddrPort(from), nil
	}
}

// WriteTo sends a QUIC packet of the relay's own connections.
func (c *ServerConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	return c.udp.WriteTo(p, addr)
}

// Forward sends a rewritten frame to a client.
func (c *ServerConn) Forward(frame []byte, to netip.AddrPort) error {
	_, err := c.udp.WriteToUDPAddrPort(frame, to)
	return err
}
