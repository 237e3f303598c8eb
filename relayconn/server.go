package relayconn

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/connetd/connetd/internal/ratelimit"
	"github.com/connetd/connetd/wire"
)

// Dest is where the relay sends a frame: a client's address, and the
// relay's own address that this client talks to. Local matters on a
// wildcard bind with several addresses: a reply from another address would
// not reach the client's QUIC connection (nor pass its NAT). An invalid
// Local lets the kernel pick.
type Dest struct {
	Addr  netip.AddrPort
	Local netip.Addr
}

// Router decides the fate of one relay data frame: frame was received from
// from, sent to the relay's address local (invalid unless the socket is
// bound to a wildcard address). It may rewrite frame in place (not its
// length) and returns where to send it, or false to drop it. It runs on
// the socket's read path, so it must not block, and must not keep frame.
type Router func(frame []byte, from netip.AddrPort, local netip.Addr) (Dest, bool)

const (
	// batch is how many datagrams one recvmmsg reads. quic-go reads 8 at
	// a time; forwarding gains from more.
	batch = 64
	// slotSize holds any datagram the relay handles: frames carry at most
	// quic-go's 1452-byte packets plus the 17-byte header. A longer
	// datagram is truncated and dropped.
	slotSize = 2048
	// With GRO a read holds up to 64 joined datagrams (at most 64 KiB),
	// so slots are bigger and fewer.
	groBatch = 32
	// clientGROBatch is a client's: it reads one relay's or peer's bursts,
	// and holds 256 KiB per socket rather than 2 MiB. Four slots are up
	// to 256 datagrams a read, still 32 of quic-go's batches of 8.
	clientGROBatch = 4
	groSlotSize    = 1 << 16
	groSegments    = 64
	// oobSize matches quic-go's own control-message buffer, so that what
	// the relay hands on always fits.
	oobSize = 128
)

// ServerConn is the relay server's socket. quic-go reads it through
// ReadBatch, which reads datagrams in batches (recvmmsg; with UDP GRO one
// read may hold several datagrams of one sender), forwards the relay data
// frames among them at once (rewritten in place, sent with one sendmmsg
// per batch, runs of frames to one client as one GSO send) and returns
// only the packets of the relay's own QUIC connections. It uses its own
// recvmmsg rather than x/net's ReadBatch, which allocates an address per
// datagram.
// It implements quic-go's OOBCapablePacketConn, so quic-go keeps ECN, GSO
// and, on a wildcard bind, sends its own packets from the address each
// client talks to.
//
// Reading (ReadBatch, ReadFrom, ReadMsgUDP) is for one goroutine at a
// time, as quic-go does; writing is safe concurrently with it.
type ServerConn struct {
	udp      *net.UDPConn
	raw      syscall.RawConn
	route    Router
	v6       bool // an AF_INET6 socket: IPv4 peers get mapped addresses
	wildcard bool // bound to a wildcard: send each frame from its client's Local

	rx       *reader
	tx       *sendBatch
	txio     *mmsgIO
	pending  []span // QUIC packets read but not yet returned
	reflectB []byte
	limit    *ratelimit.PerSource // reflect answers per source

	sendFailed atomic.Int64
	reads      BatchSizes // datagrams per read
}

// NewServer wraps udp; route is called for every relay data frame read.
func NewServer(udp *net.UDPConn, route Router) (*ServerConn, error) {
	raw, err := udp.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("relay socket: %w", err)
	}
	v6, err := socketInfo(raw)
	if err != nil {
		return nil, fmt.Errorf("relay socket options: %w", err)
	}
	la, _ := udp.LocalAddr().(*net.UDPAddr)
	return newServerConn(udp, raw, route, v6, la != nil && la.IP.IsUnspecified(), useGRO && enableGRO(raw)), nil
}

// useGRO is whether NewServer asks for UDP GRO (see groBatch).
var useGRO = true

func newServerConn(udp *net.UDPConn, raw syscall.RawConn, route Router, v6, wildcard, gro bool) *ServerConn {
	rx := newReader(raw, gro, groBatch)
	return &ServerConn{
		udp: udp, raw: raw, route: route, v6: v6, wildcard: wildcard,
		rx:      rx,
		tx:      newSendBatch(rx.capacity(), raw, v6, wildcard),
		txio:    newMmsgIO(raw),
		pending: make([]span, 0, rx.capacity()),
		limit:   ratelimit.Reflect(),
	}
}

// span is one datagram in a read slot: with GRO a slot holds several.
type span struct {
	slot int
	b    []byte
	from netip.AddrPort
}

// SendFailures counts frames the kernel refused to send.
func (c *ServerConn) SendFailures() int64 { return c.sendFailed.Load() }

// ReadBatches counts the socket's reads by datagrams per read.
func (c *ServerConn) ReadBatches() *BatchSizes { return &c.reads }

// ReadBatch returns the next QUIC packets (at least one), with their
// control messages (ECN, destination address) as recvmmsg gave them.
// flags is ignored.
func (c *ServerConn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	for len(c.pending) == 0 {
		if err := c.readAndForward(); err != nil {
			return 0, err
		}
	}
	k := 0
	for ; k < len(ms) && k < len(c.pending); k++ {
		c.deliver(&ms[k], c.pending[k])
	}
	// Shift what is left; the next call returns it before reading again,
	// because a read reuses every slot.
	c.pending = c.pending[:copy(c.pending, c.pending[k:])]
	return k, nil
}

func (c *ServerConn) deliver(m *ipv4.Message, p span) {
	if len(m.Buffers) == 0 {
		m.N = 0
	} else {
		m.N = copy(m.Buffers[0], p.b)
	}
	// quic-go reads ECN and the destination address from these, and
	// ignores the GRO segment size.
	m.NN = copy(m.OOB, c.rx.oob(p.slot))
	m.Flags = 0
	m.Addr = net.UDPAddrFromAddrPort(p.from)
}

// readAndForward reads one batch, forwards its frames, answers its
// reflect probes and leaves its QUIC packets in c.pending.
func (c *ServerConn) readAndForward() error {
	n := 0
	defer func() { c.reads.add(n) }()
	err := c.rx.read(func(d datagram) {
		n++
		local := d.local
		if !c.wildcard {
			local = netip.Addr{}
		}
		// Each datagram GRO joined is whole: a frame with its own header,
		// or a packet of the relay's own QUIC.
		switch {
		case wire.IsRelayFrame(d.b):
			c.forward(d.b, d.from, local)
		case wire.IsProbe(d.b):
			c.reflect(d.b, d.from, local)
		default:
			c.pending = append(c.pending, span{slot: d.slot, b: d.b, from: d.from})
		}
	})
	if err != nil {
		return opError(c.udp, "recvmmsg", err)
	}
	return c.flush()
}

// forward queues frame, still in its read slot, for the next sendmmsg.
func (c *ServerConn) forward(frame []byte, from netip.AddrPort, local netip.Addr) {
	to, ok := c.route(frame, from, local)
	if !ok {
		return
	}
	if !c.v6 && !to.Addr.Addr().Is4() {
		c.sendFailed.Add(1)
		return
	}
	if c.tx.full() {
		_ = c.flush() // a closed socket shows at the next read
	}
	c.tx.add(frame, to)
}

// flush sends the frames of the batch just read.
func (c *ServerConn) flush() error {
	failed, err := c.tx.flush(c.txio, c.udp)
	c.sendFailed.Add(int64(failed))
	if err != nil {
		return opError(c.udp, "sendmmsg", err)
	}
	return nil
}

// reflect answers a reflect request from a client's direct socket (the
// answer tells it whether its NAT maps per destination), from the address
// it was sent to.
func (c *ServerConn) reflect(b []byte, from netip.AddrPort, local netip.Addr) {
	if !c.limit.Allow(from.Addr(), time.Now()) {
		return
	}
	reply := wire.AnswerReflect(b, from)
	if reply == nil {
		return
	}
	var oob []byte
	if local.IsValid() {
		c.reflectB = c.reflectB[:0]
		c.reflectB = append(c.reflectB, make([]byte, pktinfoLen)...)
		oob = c.reflectB[:putPktinfo(c.reflectB, local)]
	}
	_, _, _ = c.udp.WriteMsgUDPAddrPort(reply, oob, from)
}

// ReadMsgUDP returns the next QUIC packet, like ReadBatch.
func (c *ServerConn) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	return readOne(c, b, oob)
}

// ReadFrom returns the next QUIC packet.
func (c *ServerConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, _, _, addr, err := c.ReadMsgUDP(b, nil)
	if err != nil {
		return 0, nil, err
	}
	return n, addr, nil
}

// WriteTo sends a QUIC packet of the relay's own connections.
func (c *ServerConn) WriteTo(p []byte, addr net.Addr) (int, error) { return c.udp.WriteTo(p, addr) }

// WriteMsgUDP is how quic-go sends when it sees an OOBCapablePacketConn:
// oob carries its source address (PKTINFO), ECN and GSO segment size.
func (c *ServerConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	return c.udp.WriteMsgUDP(b, oob, addr)
}

func (c *ServerConn) Close() error                       { return c.udp.Close() }
func (c *ServerConn) LocalAddr() net.Addr                { return c.udp.LocalAddr() }
func (c *ServerConn) SetDeadline(t time.Time) error      { return c.udp.SetDeadline(t) }
func (c *ServerConn) SetReadDeadline(t time.Time) error  { return c.udp.SetReadDeadline(t) }
func (c *ServerConn) SetWriteDeadline(t time.Time) error { return c.udp.SetWriteDeadline(t) }
func (c *ServerConn) SetReadBuffer(n int) error          { return c.udp.SetReadBuffer(n) }
func (c *ServerConn) SetWriteBuffer(n int) error         { return c.udp.SetWriteBuffer(n) }

// SyscallConn lets quic-go set socket options (don't-fragment, ECN,
// PKTINFO) and probe for GSO on the real socket.
func (c *ServerConn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }
