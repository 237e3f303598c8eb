package relayconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/connetd/connetd/wire"
)

// Limits of one framed GSO write: the UDP payload limit, and the segment
// count older kernels accept (UDP_MAX_SEGMENTS).
const (
	maxWrite         = 65000
	maxWriteSegments = 64
)

// ReadBatch implements quic-go's batch reader: datagrams are read in
// batches (recvmmsg, with GRO several per slot), data frames from relays
// are unframed and appear to come from the peer's virtual address, and
// frames from anyone else are dropped. It returns at least one packet.
func (c *Conn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	if c.rx == nil {
		return 0, errors.New("relayconn: socket without a file descriptor")
	}
	for len(c.pending) == 0 {
		if err := c.rx.read(c.take); err != nil {
			return 0, opError(c.udp, "recvmmsg", err)
		}
	}
	k := 0
	for ; k < len(ms) && k < len(c.pending); k++ {
		p, m := c.pending[k], &ms[k]
		m.N = copy(m.Buffers[0], p.b)
		m.NN = copy(m.OOB, c.rx.oob(p.slot)) // ECN and destination address; quic-go skips GRO's
		m.Flags, m.Addr = 0, p.from
	}
	// What is left is returned before the next read, which reuses the slots.
	c.pending = c.pending[:copy(c.pending, c.pending[k:])]
	return k, nil
}

// takeDatagram queues one datagram read for quic-go: a frame from a relay
// unframed, anything else but a frame as it is.
func (c *Conn) takeDatagram(d datagram) {
	if !wire.IsRelayFrame(d.b) {
		if c.lastAddr == nil || d.from != c.lastFrom {
			c.lastFrom, c.lastAddr = d.from, net.UDPAddrFromAddrPort(d.from)
		}
		c.pending = append(c.pending, packet{slot: d.slot, b: d.b, from: c.lastAddr})
		return
	}
	if !c.isRelay(d.from) {
		return // frames only come from relays we use; anything else is noise
	}
	peer, payload, err := wire.ParseRelayFrame(d.b)
	if err != nil {
		return
	}
	c.pending = append(c.pending, packet{slot: d.slot, b: payload, from: c.PeerAddr(d.from, peer)})
}

// ReadMsgUDP returns the next packet, like ReadBatch.
func (c *Conn) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	return readOne(c, b, oob)
}

// WriteMsgUDP sends b to addr: to a peer's virtual address framed
// (each GSO segment gets its own frame header), to anything else as is.
func (c *Conn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	peer, ok := c.route(addr)
	if !ok {
		return c.udp.WriteMsgUDP(b, oob, addr)
	}
	wb := c.bufs.Get().(*writeBuf)
	defer c.bufs.Put(wb)
	seg, rest := splitWriteOOB(wb.oob[:0], oob, peer.Relay.Addr().Is4())
	wb.oob = rest
	if seg == 0 || seg >= len(b) {
		seg = len(b)
	}
	for off := 0; off < len(b); {
		buf := wb.frames[:0]
		count := 0
		for off < len(b) && count < maxWriteSegments && len(buf)+wire.RelayFrameHeader+seg <= maxWrite {
			end := min(off+seg, len(b))
			buf = buf[:len(buf)+wire.RelayFrameHeader]
			wire.PutRelayHeader(buf[len(buf)-wire.RelayFrameHeader:], peer.Peer)
			buf = append(buf, b[off:end]...)
			off = end
			count++
		}
		wb.frames = buf
		cm := rest
		if count > 1 {
			// Appended past rest's length, in its spare room: rest stays
			// as it is for the next batch of segments.
			cm = appendSegment(rest, uint16(wire.RelayFrameHeader+seg))
			wb.oob = cm[:len(rest)]
		}
		if _, _, err := c.udp.WriteMsgUDP(buf, cm, peer.relay); err != nil {
			return 0, 0, fmt.Errorf("write to %s via relay: %w", peer.Peer.Short(), err)
		}
	}
	return len(b), len(oob), nil
}

// splitWriteOOB splits quic-go's control messages for a virtual address: the
// GSO segment size, and the rest fitted to the relay's address family
// (quic-go chose IPv4 ECN for the virtual IPv4 address), appended to rest.
func splitWriteOOB(rest, oob []byte, relay4 bool) (seg int, _ []byte) {
	for data := oob; len(data) > 0; {
		hdr, body, remainder, err := unix.ParseOneSocketControlMessage(data)
		if err != nil {
			break
		}
		whole := data[:len(data)-len(remainder)]
		data = remainder
		switch {
		case hdr.Level == unix.SOL_UDP && hdr.Type == unix.UDP_SEGMENT && len(body) >= 2:
			seg = int(binary.NativeEndian.Uint16(body))
		case hdr.Level == unix.IPPROTO_IP && hdr.Type == unix.IP_TOS && len(body) >= 1 && !relay4:
			rest = appendTClass(rest, body[0])
		default:
			rest = append(rest, whole...)
		}
	}
	return seg, rest
}

func appendSegment(b []byte, size uint16) []byte {
	start := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(2))...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[start+unix.CmsgLen(0):], size)
	return b
}

func appendTClass(b []byte, tos byte) []byte {
	start := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(4))...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_TCLASS
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[start+unix.CmsgLen(0):], uint32(tos))
	return b
}
