package relayconn

import (
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// maxSegments and maxGSOBytes keep a GSO send within what the kernel
	// takes: at most 64 segments, and one UDP datagram's worth in total.
	maxSegments = 64
	maxGSOBytes = 65000
)

// segmentOOBLen is room for a UDP_SEGMENT control message.
var segmentOOBLen = unix.CmsgSpace(2)

// sendBatch collects the frames of one read batch and sends them with one
// sendmmsg. Consecutive frames to the same destination with the same
// length (the last may be shorter) share one message sent with GSO
// (UDP_SEGMENT): the kernel walks its send path once for all of them and
// cuts the datagrams apart at the end. The frames stay in the read buffers;
// each segment is one iovec. Nothing here allocates per frame.
type sendBatch struct {
	hs    []mmsghdr
	names [][sockaddrLen]byte
	oobs  [][]byte
	dests []Dest
	seg   []int  // message i's segment size
	nseg  []int  // how many segments it has
	first []int  // its first iovec
	open  []bool // it may take another segment
	size  []int  // its bytes
	iovs  []unix.Iovec
	bufs  [][]byte // the frames, for sending one by one
	nmsg  int
	niov  int

	gso      bool // the kernel takes UDP_SEGMENT; cleared when it refuses
	v6       bool
	wildcard bool
}

func newSendBatch(n int, raw syscall.RawConn, v6, wildcard bool) *sendBatch {
	b := &sendBatch{
		hs: make([]mmsghdr, n), names: make([][sockaddrLen]byte, n), oobs: make([][]byte, n),
		dests: make([]Dest, n), seg: make([]int, n), nseg: make([]int, n), first: make([]int, n),
		open: make([]bool, n), size: make([]int, n), iovs: make([]unix.Iovec, n), bufs: make([][]byte, n),
		gso: gsoSupported(raw), v6: v6, wildcard: wildcard,
	}
	for i := range b.oobs {
		b.oobs[i] = make([]byte, pktinfoLen+segmentOOBLen)
		b.hs[i].hdr.Name = &b.names[i][0]
	}
	return b
}

// gsoSupported asks the kernel whether it knows UDP_SEGMENT, as quic-go
// does (and honours its switch to turn GSO off).
func gsoSupported(raw syscall.RawConn) bool {
	if off, err := strconv.ParseBool(os.Getenv("QUIC_GO_DISABLE_GSO")); err == nil && off {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		_, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	}); err != nil {
		return false
	}
	return serr == nil
}

// full reports whether add has no room left.
func (b *sendBatch) full() bool { return b.niov == len(b.iovs) }

// add queues frame for to.
func (b *sendBatch) add(frame []byte, to Dest) {
	j := b.niov
	b.niov++
	b.bufs[j] = frame
	b.iovs[j].Base = &frame[0]
	b.iovs[j].SetLen(len(frame))
	if i := b.nmsg - 1; b.gso && i >= 0 && b.open[i] && b.dests[i] == to &&
		len(frame) <= b.seg[i] && b.nseg[i] < maxSegments && b.size[i]+len(frame) <= maxGSOBytes {
		b.nseg[i]++
		b.size[i] += len(frame)
		b.open[i] = len(frame) == b.seg[i] // a shorter segment ends it
		return
	}
	i := b.nmsg
	b.nmsg++
	b.dests[i], b.seg[i], b.nseg[i], b.first[i], b.open[i], b.size[i] = to, len(frame), 1, j, true, len(frame)
}

// finish fills in message i's header: address, iovecs and control
// messages (the source address on a wildcard bind, the segment size).
func (b *sendBatch) finish(i int) {
	h := &b.hs[i].hdr
	h.Namelen = putSockaddr(&b.names[i], b.dests[i].Addr, b.v6)
	h.Iov = &b.iovs[b.first[i]]
	h.SetIovlen(b.nseg[i])
	oob := b.oobs[i]
	n := 0
	if b.wildcard && b.dests[i].Local.IsValid() {
		n = putPktinfo(oob, b.dests[i].Local)
	}
	if b.nseg[i] > 1 {
		clear(oob[n : n+segmentOOBLen])
		c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[n]))
		c.Level, c.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
		c.SetLen(unix.CmsgLen(2))
		*(*uint16)(unsafe.Pointer(&oob[n+unix.CmsgLen(0)])) = uint16(b.seg[i])
		n += segmentOOBLen
	}
	h.Control = nil
	if n > 0 {
		h.Control = &oob[0]
	}
	h.SetControllen(n)
}

// flush sends the queued frames and returns how many the kernel refused
// (say, their client's network is unreachable): those are skipped, the
// rest go on. An error means the socket is closed.
func (b *sendBatch) flush(io *mmsgIO, udp *net.UDPConn) (failed int, err error) {
	defer func() { b.nmsg, b.niov = 0, 0 }()
	for i := range b.nmsg {
		b.finish(i)
	}
	for start := 0; start < b.nmsg; {
		n, err := io.sendmmsg(b.hs[start:b.nmsg])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return failed, err
			}
			if b.nseg[start] > 1 && errors.Is(err, unix.EIO) {
				// EIO: the device cannot checksum for GSO. Send this
				// message's frames one by one, and no more GSO.
				b.gso = false
				failed += b.sendEach(start, udp)
			} else {
				failed += b.nseg[start]
			}
			n = 1
		}
		start += n
	}
	return failed, nil
}

func (b *sendBatch) sendEach(i int, udp *net.UDPConn) (failed int) {
	var oob []byte
	if b.wildcard && b.dests[i].Local.IsValid() {
		oob = b.oobs[i][:putPktinfo(b.oobs[i], b.dests[i].Local)]
	}
	for _, f := range b.bufs[b.first[i] : b.first[i]+b.nseg[i]] {
		if _, _, err := udp.WriteMsgUDPAddrPort(f, oob, b.dests[i].Addr); err != nil {
			failed++
		}
	}
	return failed
}
