package relayconn

import (
	"net"
	"syscall"
	"time"
)

// base forwards the socket methods quic-go uses. It deliberately does not
// embed *net.UDPConn: quic-go would then see ReadMsgUDP and read the socket
// directly, bypassing the frame handling in ReadFrom.
type base struct {
	udp *net.UDPConn
}

func (c base) Close() error                       { return c.udp.Close() }
func (c base) LocalAddr() net.Addr                { return c.udp.LocalAddr() }
func (c base) SetDeadline(t time.Time) error      { return c.udp.SetDeadline(t) }
func (c base) SetReadDeadline(t time.Time) error  { return c.udp.SetReadDeadline(t) }
func (c base) SetWriteDeadline(t time.Time) error { return c.udp.SetWriteDeadline(t) }

// SetReadBuffer and SetWriteBuffer let quic-go size the socket buffers.
func (c base) SetReadBuffer(n int) error  { return c.udp.SetReadBuffer(n) }
func (c base) SetWriteBuffer(n int) error { return c.udp.SetWriteBuffer(n) }

// SyscallConn lets quic-go set the don't-fragment bit, which path MTU
// discovery of the inner connections relies on.
func (c base) SyscallConn() (syscall.RawConn, error) { return c.udp.SyscallConn() }
