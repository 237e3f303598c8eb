// Package relayconn is the client end of the relay data path: a
// net.PacketConn over one UDP socket that carries both the client's own QUIC
// connections to relays and, framed in relay data frames, the packets of its
// QUIC connections to peers through those relays. quic-go sees the peers as
// ordinary remote addresses (Addr), so a peer connection over a relay is an
// ordinary quic-go connection, end-to-end encrypted between the peers.
package relayconn

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// Addr names a peer reached through a relay.
type Addr struct {
	Relay netip.AddrPort
	Peer  identity.ID
}

func (a Addr) Network() string { return "connetd-relay" }
func (a Addr) String() string  { return a.Peer.Short() + "@" + a.Relay.String() }

// Conn wraps a client's UDP socket toward relays. It is safe for
// concurrent use.
type Conn struct {
	base
	relays atomic.Pointer[map[netip.AddrPort]struct{}]
	bufs   sync.Pool
}

// New wraps udp.
func New(udp *net.UDPConn) *Conn {
	c := &Conn{base: base{udp}}
	empty := map[netip.AddrPort]struct{}{}
	c.relays.Store(&empty)
	c.bufs.New = func() any { b := make([]byte, 2048); return &b }
	return c
}

// SetRelays sets the addresses from which relay data frames are accepted.
func (c *Conn) SetRelays(addrs []netip.AddrPort) {
	m := make(map[netip.AddrPort]struct{}, len(addrs))
	for _, a := range addrs {
		m[unmap(a)] = struct{}{}
	}
	c.relays.Store(&m)
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func (c *Conn) isRelay(a netip.AddrPort) bool {
	_, ok := (*c.relays.Load())[unmap(a)]
	return ok
}

// ReadFrom returns the next packet: a relay's own QUIC packet as from the
// relay's UDP address, or a peer's inner packet as from Addr.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.udp.ReadFromUDPAddrPort(b)
		if err != nil {
			return 0, nil, err
		}
		if !wire.IsRelayFrame(b[:n]) {
			return n, net.UDPAddrFromAddrPort(from), nil
		}
		if !c.isRelay(from) {
			continue // frames only come from relays we use; anything else is noise
		}
		peer, payload, err := wire.ParseRelayFrame(b[:n])
		if err != nil {
			continue
		}
		m := copy(b, payload)
		return m, Addr{Relay: unmap(from), Peer: peer}, nil
	}
}

// WriteTo sends p to a relay (UDP address) or, framed, to a peer (Addr).
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	switch a := addr.(type) {
	case Addr:
		need := wire.RelayFrameHeader + len(p)
		bp := c.bufs.Get().(*[]byte)
		if cap(*bp) < need {
			*bp = make([]byte, need)
		}
		buf := (*bp)[:need]
		wire.PutRelayHeader(buf, a.Peer)
		copy(buf[wire.RelayFrameHeader:], p)
		_, err := c.udp.WriteToUDPAddrPort(buf, a.Relay)
		c.bufs.Put(bp)
		if err != nil {
			return 0, fmt.Errorf("write to %s via relay: %w", a.Peer.Short(), err)
		}
		return len(p), nil
	case *net.UDPAddr:
		return c.udp.WriteToUDP(p, a)
	default:
		return 0, fmt.Errorf("relayconn: unsupported address type %T", addr)
	}
}

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
