// Package relayconn is the client end of the relay data path: one UDP
// socket that carries both the client's own QUIC connections to relays and,
// framed in relay data frames, the packets of its QUIC connections to peers
// through those relays. (The client reads its direct socket through a Conn
// too, with no relays: for the batched GRO reads alone.)
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
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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

// Conn wraps a client's UDP socket toward relays. Reading (ReadBatch,
// ReadMsgUDP, ReadFrom) is for one goroutine at a time, as quic-go does;
// everything else is safe for concurrent use.
type Conn struct {
	udp *net.UDPConn
	// relays are the addresses from which data frames are accepted.
	relays atomic.Pointer[map[netip.AddrPort]struct{}]

	// The virtual addresses of relayed peers, both ways. Reads are
	// lock-free: the maps are replaced, never changed, under mu.
	mu      sync.Mutex
	addrs   atomic.Pointer[virtualAddrs]
	nextIdx uint32

	rx      *reader
	pending []packet         // read but not yet returned to quic-go
	take    func(d datagram) // c.takeDatagram, bound once
	// The sender of the last datagram not from a relay, as quic-go gets
	// it: a bulk transfer's packets all come from one peer, and an
	// address each would be most of the read path's garbage. Read side
	// only; quic-go keeps the addresses it is given, so a new sender gets
	// a new one rather than a change to this.
	lastFrom netip.AddrPort
	lastAddr *net.UDPAddr
	bufs     sync.Pool // *writeBuf: frames and control messages of writes
}

type virtualAddrs struct {
	byVirt map[netip.Addr]route
	byPeer map[Addr]*net.UDPAddr
}

// route is a relayed peer with its relay's address ready for sending, so
// that a write allocates none.
type route struct {
	Addr
	relay *net.UDPAddr
}

// writeBuf holds one write's frames and control messages.
type writeBuf struct{ frames, oob []byte }

// packet is one datagram for quic-go: its bytes in a read slot, and the
// address it comes from (a relayed peer's virtual address for a frame).
type packet struct {
	slot int
	b    []byte
	from *net.UDPAddr
}

// New wraps udp. It asks for UDP GRO, so that the relay's GSO sends are
// delivered whole; without it reads go a datagram per slot.
func New(udp *net.UDPConn) *Conn {
	c := &Conn{udp: udp}
	empty := map[netip.AddrPort]struct{}{}
	c.relays.Store(&empty)
	c.addrs.Store(&virtualAddrs{byVirt: map[netip.Addr]route{}, byPeer: map[Addr]*net.UDPAddr{}})
	c.bufs.New = func() any { return &writeBuf{frames: make([]byte, 0, maxWrite), oob: make([]byte, 0, 128)} }
	c.take = c.takeDatagram
	if raw, err := udp.SyscallConn(); err == nil {
		c.rx = newReader(raw, enableGRO(raw), clientGROBatch)
		c.pending = make([]packet, 0, c.rx.capacity())
	}
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
	if v := c.addrs.Load().byPeer[a]; v != nil {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.addrs.Load()
	if v := old.byPeer[a]; v != nil {
		return v
	}
	// Addresses are never reused: a connection may outlive a relay.
	c.nextIdx++
	base := virtualNet.Addr().As4()
	idx := c.nextIdx
	ip := netip.AddrFrom4([4]byte{base[0] | byte(idx>>24&0x0f), byte(idx >> 16), byte(idx >> 8), byte(idx)})
	v := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, virtualPort))
	next := &virtualAddrs{byVirt: maps.Clone(old.byVirt), byPeer: maps.Clone(old.byPeer)}
	next.byVirt[ip] = route{Addr: a, relay: net.UDPAddrFromAddrPort(a.Relay)}
	next.byPeer[a] = v
	c.addrs.Store(next)
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
	r, ok := c.route(u)
	return r.Addr, ok
}

func (c *Conn) route(u *net.UDPAddr) (route, bool) {
	ip, ok := netip.AddrFromSlice(u.IP)
	if !ok || u.Port != virtualPort {
		return route{}, false
	}
	r, ok := c.addrs.Load().byVirt[ip.Unmap()]
	return r, ok
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
