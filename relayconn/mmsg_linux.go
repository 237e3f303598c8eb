package relayconn

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is the kernel's struct mmsghdr. Go pads it to the alignment of
// Msghdr, as C does, on both 32- and 64-bit platforms.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// sockaddrLen is room for a sockaddr_in6, the larger of the two families.
const sockaddrLen = unix.SizeofSockaddrInet6

// msgs is a fixed set of message slots for recvmmsg or sendmmsg. Every
// pointer the kernel follows is set up once here, so a batch costs no
// allocation: the hot path only fills lengths.
type msgs struct {
	hs    []mmsghdr
	iovs  []unix.Iovec
	names [][sockaddrLen]byte
	oobs  [][]byte
}

func newMsgs(n, oobLen int) *msgs {
	m := &msgs{
		hs:    make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([][sockaddrLen]byte, n),
		oobs:  make([][]byte, n),
	}
	oob := make([]byte, n*oobLen)
	for i := range m.hs {
		m.oobs[i] = oob[i*oobLen : (i+1)*oobLen : (i+1)*oobLen]
		h := &m.hs[i].hdr
		h.Name = &m.names[i][0]
		h.Iov = &m.iovs[i]
		h.SetIovlen(1)
	}
	return m
}

// setBuf points slot i at b.
func (m *msgs) setBuf(i int, b []byte) {
	m.iovs[i].Base = &b[0]
	m.iovs[i].SetLen(len(b))
}

// prepareRecv resets slot i's lengths, which the kernel overwrote.
func (m *msgs) prepareRecv(i int) {
	h := &m.hs[i].hdr
	h.Namelen = sockaddrLen
	h.Control = &m.oobs[i][0]
	h.SetControllen(len(m.oobs[i]))
	h.Flags = 0
}

// mmsgIO wraps the two syscalls for RawConn.Read and Write. The closures
// are bound once: a method value made per call would allocate.
type mmsgIO struct {
	raw      syscall.RawConn
	hs       []mmsghdr
	n        int
	errno    syscall.Errno
	recvFunc func(fd uintptr) bool
	sendFunc func(fd uintptr) bool
}

func newMmsgIO(raw syscall.RawConn) *mmsgIO {
	io := &mmsgIO{raw: raw}
	io.recvFunc = io.recv
	io.sendFunc = io.send
	return io
}

func (io *mmsgIO) recv(fd uintptr) bool {
	return io.call(unix.SYS_RECVMMSG, fd)
}

func (io *mmsgIO) send(fd uintptr) bool {
	return io.call(unix.SYS_SENDMMSG, fd)
}

// call returns false on EAGAIN so that the runtime poller waits for the
// socket and calls again.
func (io *mmsgIO) call(trap, fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&io.hs[0])), uintptr(len(io.hs)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		io.n, io.errno = int(n), e
		return e != unix.EAGAIN
	}
}

// recvmmsg reads up to len(hs) datagrams, waiting for the first.
func (io *mmsgIO) recvmmsg(hs []mmsghdr) (int, error) {
	io.hs = hs
	if err := io.raw.Read(io.recvFunc); err != nil {
		return 0, err
	}
	if io.errno != 0 {
		return 0, io.errno
	}
	return io.n, nil
}

// sendmmsg sends from the start of hs; it returns how many went out, at
// least one unless err is set (the kernel reports an error only when the
// first message fails).
func (io *mmsgIO) sendmmsg(hs []mmsghdr) (int, error) {
	io.hs = hs
	if err := io.raw.Write(io.sendFunc); err != nil {
		return 0, err
	}
	if io.errno != 0 {
		return 0, io.errno
	}
	return io.n, nil
}

// parseSockaddr decodes a sockaddr_in or sockaddr_in6 the kernel wrote.
// IPv4-mapped addresses are unmapped: clients are keyed by plain addresses.
// A zone (link-local scope) is dropped: allocating its name per packet is
// not worth it for a relay, which is reached over routable addresses.
func parseSockaddr(b *[sockaddrLen]byte) netip.AddrPort {
	port := binary.BigEndian.Uint16(b[2:4])
	switch binary.NativeEndian.Uint16(b[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), port)
	}
	return netip.AddrPort{}
}

// putSockaddr encodes a in the socket's family (IPv4 as mapped for an
// IPv6 socket) and returns its length.
func putSockaddr(b *[sockaddrLen]byte, a netip.AddrPort, v6sock bool) uint32 {
	*b = [sockaddrLen]byte{}
	binary.BigEndian.PutUint16(b[2:4], a.Port())
	if !v6sock {
		binary.NativeEndian.PutUint16(b[0:2], unix.AF_INET)
		ip := a.Addr().As4()
		copy(b[4:8], ip[:])
		return unix.SizeofSockaddrInet4
	}
	binary.NativeEndian.PutUint16(b[0:2], unix.AF_INET6)
	ip := a.Addr().As16()
	copy(b[8:24], ip[:])
	return unix.SizeofSockaddrInet6
}

// pktinfoLen is room for one IP_PKTINFO or IPV6_PKTINFO control message.
var pktinfoLen = unix.CmsgSpace(unix.SizeofInet6Pktinfo)

// putPktinfo writes the control message that makes the kernel send from
// local (IP_PKTINFO's ipi_spec_dst, or IPV6_PKTINFO) and returns its length.
// An IPv4 local address takes IP_PKTINFO also on a dual-stack socket: the
// kernel hands mapped destinations to its IPv4 path, which reads it.
func putPktinfo(b []byte, local netip.Addr) int {
	clear(b[:pktinfoLen])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	data := b[unix.CmsgLen(0):]
	if local.Is4() {
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		ip := local.As4()
		copy(data[4:8], ip[:]) // ipi_spec_dst
		return unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	}
	h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	ip := local.As16()
	copy(data[0:16], ip[:])
	return unix.CmsgSpace(unix.SizeofInet6Pktinfo)
}

// parseOOB finds, in a received datagram's control messages, its
// destination address (invalid when the socket did not ask for it) and,
// when GRO joined several datagrams, their size (0 otherwise).
func parseOOB(oob []byte) (local netip.Addr, seg int) {
	for len(oob) >= unix.CmsgLen(0) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.CmsgLen(0) || l > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			local = netip.AddrFrom4([4]byte(data[8:12])) // ipi_addr: the header's destination
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			local = netip.AddrFrom16([16]byte(data[0:16])).Unmap()
		case h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && len(data) >= 4:
			seg = int(binary.NativeEndian.Uint32(data[0:4]))
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return local, seg
}

// enableGRO asks the kernel to join consecutive same-size datagrams of one
// sender into one read (UDP_GRO); it reports whether the kernel agreed.
func enableGRO(raw syscall.RawConn) bool {
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// socketInfo reports whether the socket is IPv6 (perhaps dual-stack) and
// asks for the destination address of every datagram, which a wildcard
// bind needs to answer from the right address. quic-go asks for it too on
// a wildcard bind; asking here keeps forwarding correct on its own.
func socketInfo(raw syscall.RawConn) (v6 bool, err error) {
	var domain int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if serr != nil {
			return
		}
		// One of the two fails on a single-stack socket; that is fine.
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		if domain == unix.AF_INET6 {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		}
	}); err != nil {
		return false, err
	}
	if serr != nil {
		return false, serr
	}
	return domain == unix.AF_INET6, nil
}
