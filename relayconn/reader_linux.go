package relayconn

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// reader reads a socket in batches (recvmmsg) into fixed slots, without
// allocating. With UDP GRO a slot may hold several datagrams of one sender,
// joined by the kernel: each is whole, and reader hands them out one by
// one. Both ends of the relay data path read this way: the relay forwards
// frames straight from the slots, a client unframes them into quic-go's
// buffers.
type reader struct {
	gro   bool
	slots int
	rx    *msgs
	bufs  [][]byte
	io    *mmsgIO
}

// datagram is one datagram in a read slot.
type datagram struct {
	b     []byte         // its bytes, in the slot
	from  netip.AddrPort // its sender
	local netip.Addr     // the address it was sent to, when the socket asks
	slot  int
}

// newReader reads raw; with gro, groSlots slots of 64 KiB each (memory a
// reader holds: the relay wants many, a client few).
func newReader(raw syscall.RawConn, gro bool, groSlots int) *reader {
	slots, size := batch, slotSize
	if gro {
		slots, size = groSlots, groSlotSize
	}
	r := &reader{gro: gro, slots: slots, rx: newMsgs(slots, oobSize), bufs: make([][]byte, slots), io: newMmsgIO(raw)}
	mem := make([]byte, slots*size)
	for i := range r.bufs {
		r.bufs[i] = mem[i*size : (i+1)*size : (i+1)*size]
		r.rx.setBuf(i, r.bufs[i])
	}
	return r
}

// capacity is how many datagrams one read may return at most.
func (r *reader) capacity() int {
	if r.gro {
		return r.slots * groSegments
	}
	return batch
}

// read waits for one batch and calls each for every whole datagram in it,
// in order. The slots stay valid until the next read.
func (r *reader) read(each func(d datagram)) error {
	for i := range r.rx.hs {
		r.rx.prepareRecv(i)
	}
	n, err := r.io.recvmmsg(r.rx.hs)
	if err != nil {
		return err
	}
	for i := range n {
		h := &r.rx.hs[i]
		if h.hdr.Flags&unix.MSG_TRUNC != 0 {
			continue
		}
		all := r.bufs[i][:h.len]
		local, seg := parseOOB(r.rx.oobs[i][:h.hdr.Controllen])
		if seg <= 0 || seg > len(all) {
			seg = len(all)
		}
		from := parseSockaddr(&r.rx.names[i])
		for off := 0; off < len(all); off += seg {
			each(datagram{b: all[off:min(off+seg, len(all))], from: from, local: local, slot: i})
		}
	}
	return nil
}

// oob is the control messages of slot i, as the kernel wrote them.
func (r *reader) oob(i int) []byte {
	return r.rx.oobs[i][:r.rx.hs[i].hdr.Controllen]
}

// opError wraps a syscall error as net.UDPConn does: quic-go tells closed
// sockets and timeouts apart by the *net.OpError.
func opError(udp *net.UDPConn, op string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "udp", Source: udp.LocalAddr(), Err: err}
}

// readOne is ReadMsgUDP for a batch reader: one packet, as ReadBatch gives it.
func readOne(r interface {
	ReadBatch([]ipv4.Message, int) (int, error)
}, b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	ms := []ipv4.Message{{Buffers: [][]byte{b}, OOB: oob}}
	if _, err := r.ReadBatch(ms, 0); err != nil {
		return 0, 0, 0, nil, err
	}
	return ms[0].N, ms[0].NN, ms[0].Flags, ms[0].Addr.(*net.UDPAddr), nil
}
