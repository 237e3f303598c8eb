// Package relayconn is the client end of the relay data path: one UDP
// socket that carries both the client's own QUIC connections to relays and,
// framed in relay data frames, the packets of its QUIC connections to peers
// through those relays.
//
// quic-go sees each peer behind a relay as an ordinary UDP address: a
// virtual IPv4 address from 240.0.0.0/4 (reserved, never routed) that this
// package maps to (relay, peer). So the conn can be quic-go's
// OOBCapablePacketConn and batch reader, and quic-go keeps its fast path on
// the relay socket: batched reads (recvmmsg), GSO on send (each segment
// framed here), ECN and the reply's source address.
package relayconn

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/connetd/connetd/identity"
)

// Addr names a peer reached through a relay.
type Addr struct {
	Relay netip.AddrPort
	Peer  identity.ID
}

func (a Addr) Network() string { return "connetd-relay" }
func (a Addr) String() string  { return a.Peer.Short() + "@" + a.Relay.String() }

// virtualNet is where peers' virtual addresses live: 240.0.0.0/4.
var virtualNet = netip.MustParsePrefix("240.0.0.0/4")

// virtualPort is the port of every virtual address; only the address
// tells peers apart.
const virtualPort = 9

// Conn wraps a client's UDP socket toward relays. It is safe for
// concurrent use.
type Conn struct {
	udp *net.UDPConn
	pc  *ipv4.PacketConn // batched reads of the real socket
	// relays are the addresses from which data frames are accepted.
	relays atomic.Pointer[map[netip.AddrPort]struct{}]

	// peers maps virtual addresses to relayed peers and back. Reads are
	// lock-free: the maps are replaced, never changed, under mu.
	mu      sync.Mutex
	byVirt  atomic.Pointer[map[netip.Addr]Addr]
	byPeer  map[Addr]*net.UDPAddr
	nextIdx uint32

	bufs sync.Pool // frame buffers for writes
}

// New wraps udp.
func New(udp *net.UDPConn) *Conn {
	c := &Conn{udp: udp, pc: ipv4.NewPacketConn(udp), byPeer: map[Addr]*net.UDPAddr{}}
	empty := map[netip.AddrPort]struct{}{}
	c.relays.Store(&empty)
	virt := map[netip.Addr]Addr{}
	c.byVirt.Store(&virt)
	c.bufs.New = func() any { b := make([]byte, 0, maxWrite); return &b }
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

// PeerAddr is the address quic-go dials to reach peer through relay.
func (c *Conn) PeerAddr(relay netip.AddrPort, peer identity.ID) *net.UDPAddr {
	a := Addr{Relay: unmap(relay), Peer: peer}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.byPeer[a]; v != nil {
		return v
	}
	// Addresses are never reused: a connection may outlive a relay.
	c.nextIdx++
	base := virtualNet.Addr().As4()
	idx := c.nextIdx
	ip := netip.AddrFrom4([4]byte{base[0] | byte(idx>>24&0x0f), byte(idx >> 16), byte(idx >> 8), byte(idx)})
	v := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, virtualPort))
	c.byPeer[a] = v
	old := *c.byVirt.Load()
	next := make(map[netip.Addr]Addr, len(old)+1)
	for k, val := range old {
		next[k] = val
	}
	next[ip] = a
	c.byVirt.Store(&next)
	return v
}

// Resolve tells which relayed peer a virtual address stands for.
func (c *Conn) Resolve(addr net.Addr) (Addr, bool) {
	u, ok := addr.(*net.UDPAddr)
	if !ok {
		return Addr{}, false
	}
	return c.resolve(u)
}

func (c *Conn) resolve(u *net.UDPAddr) (Addr, bool) {
	ip, ok := netip.AddrFromSlice(u.IP)
	if !ok || u.Port != virtualPort {
		return Addr{}, false
	}
	a, ok := (*c.byVirt.Load())[ip.Unmap()]
	return a, ok
}

// virtualFor is the virtual address of a peer whose frames arrived from
// relay: a peer that dials us gets one on its first packet.
func (c *Conn) virtualFor(relay netip.AddrPort, peer identity.ID) *net.UDPAddr {
	c.mu.Lock()
	v := c.byPeer[Addr{Relay: unmap(relay), Peer: peer}]
	c.mu.Unlock()
	if v != nil {
		return v
	}
	return c.PeerAddr(relay, peer)
}

// Describe names addr for people: "peer@relay" for a relayed peer.
func (c *Conn) Describe(addr net.Addr) string {
	if a, ok := c.Resolve(addr); ok {
		return a.String()
	}
	return addr.String()
}

// The socket methods quic-go uses, passed to the real socket.

func (c *Conn) Close() error                       { return c.udp.Close() }
func (c *Conn) LocalAddr() net.Addr                { return c.udp.LocalAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.udp.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.udp.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.udp.SetWriteDeadline(t) }
func (c *Conn) SetReadBuffer(n int) error          { return c.udp.SetReadBuffer(n) }
func (c *Conn) SetWriteBuffer(n int) error         { return c.udp.SetWriteBuffer(n) }

// SyscallConn lets quic-go set the don't-fragment bit (path MTU discovery
// of the inner connections relies on it) and probe GSO support.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.udp.SyscallConn() }

// ReadFrom returns the next packet; see ReadMsgUDP.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, _, _, from, err := c.ReadMsgUDP(b, nil)
	if err != nil {
		return 0, nil, err
	}
	return n, from, nil
}

// WriteTo sends p to a relay or, framed, to a peer's virtual address.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	u, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("relayconn: unsupported address type %T", addr)
	}
	n, _, err := c.WriteMsgUDP(p, nil, u)
	return n, err
}
