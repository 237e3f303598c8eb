package relayconn

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/connetd/connetd/internal/testenv"
)

// quic-go hands a GSO batch as one buffer of equal segments and a
// UDP_SEGMENT control message; each segment must reach the relay as a
// frame of its own.
func TestGSOWriteFramesEverySegment(t *testing.T) {
	r := newRig(t)
	id := peerID(4)
	payload := make([]byte, 250)
	for i := range payload {
		payload[i] = byte(i)
	}
	oob := appendSegment(nil, 100)
	n, _, err := r.conn.WriteMsgUDP(payload, oob, r.conn.PeerAddr(addrPort(r.relay), id))
	if err != nil || n != len(payload) {
		t.Fatalf("WriteMsgUDP = %d, %v", n, err)
	}
	buf := make([]byte, 2048)
	for i, want := range [][]byte{payload[:100], payload[100:200], payload[200:]} {
		_ = r.relay.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, _, err := r.relay.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		if !bytes.Equal(buf[:m], mkFrame(id, want)) {
			t.Fatalf("segment %d arrived as % x", i, buf[:min(m, 24)])
		}
	}
}

func TestReadBatchUnframesAndDropsStrangersFrames(t *testing.T) {
	r := newRig(t)
	id := peerID(6)
	quicPacket := []byte{0x41, 9, 9, 9}
	r.send(t, r.relay, mkFrame(id, []byte{0xc3, 1, 2}))
	r.send(t, r.stranger, mkFrame(id, []byte("forged")))
	r.send(t, r.stranger, quicPacket)
	ms := make([]ipv4.Message, 8)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1500)}
		ms[i].OOB = make([]byte, 128)
	}
	var got []ipv4.Message
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < 2 {
		n, err := r.conn.ReadBatch(ms, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms[:n] {
			got = append(got, ipv4.Message{Buffers: [][]byte{append([]byte(nil), m.Buffers[0][:m.N]...)}, N: m.N, Addr: m.Addr})
		}
	}
	if a, ok := r.conn.Resolve(got[0].Addr); !ok || a.Peer != id || !bytes.Equal(got[0].Buffers[0], []byte{0xc3, 1, 2}) {
		t.Fatalf("relay frame read as % x from %v", got[0].Buffers[0], got[0].Addr)
	}
	// The stranger's frame is not there: its plain packet comes next.
	if ua, ok := got[1].Addr.(*net.UDPAddr); !ok || ua.AddrPort() != addrPort(r.stranger) || !bytes.Equal(got[1].Buffers[0], quicPacket) {
		t.Fatalf("after the relay's frame came % x from %v, want the stranger's plain packet", got[1].Buffers[0], got[1].Addr)
	}
}

// quic-go marks ECN for the virtual IPv4 address; toward an IPv6 relay
// the mark must travel as an IPv6 traffic class.
func TestECNFollowsTheRelaysAddressFamily(t *testing.T) {
	oob := make([]byte, unix.CmsgSpace(1))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_TOS
	h.SetLen(unix.CmsgLen(1))
	oob[unix.CmsgLen(0)] = 0x02 // ECT(0)
	oob = appendSegment(oob, 1200)

	seg, rest := splitWriteOOB(nil, oob, true)
	if seg != 1200 || !bytes.Equal(rest, oob[:unix.CmsgSpace(1)]) {
		t.Fatalf("IPv4 relay: segment %d, rest % x", seg, rest)
	}
	seg, rest = splitWriteOOB(nil, oob, false)
	hdr, body, _, err := unix.ParseOneSocketControlMessage(rest)
	if seg != 1200 || err != nil || hdr.Level != unix.IPPROTO_IPV6 || hdr.Type != unix.IPV6_TCLASS || binary.NativeEndian.Uint32(body) != 0x02 {
		t.Fatalf("IPv6 relay: segment %d, control message %+v % x, %v", seg, hdr, body, err)
	}
}

// The relay sends frames to one client as one GSO write; with GRO they
// arrive joined, and each must come out as a packet of its own.
func TestFramesJoinedByGROAreSplit(t *testing.T) {
	r := newRig(t)
	if !r.conn.rx.gro {
		testenv.Missing(t, "the kernel refused UDP_GRO")
	}
	id := peerID(8)
	var joined []byte
	for i := range 3 {
		joined = append(joined, mkFrame(id, bytes.Repeat([]byte{byte(0xc0 + i)}, 100))...)
	}
	oob := appendSegment(nil, uint16(len(joined)/3))
	send := func() {
		if _, _, err := r.relay.WriteMsgUDP(joined, oob, r.conn.udp.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
	}
	// The kernel does join them: all three arrive in one read slot.
	send()
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var slots []int
	if err := r.conn.rx.read(func(d datagram) { slots = append(slots, d.slot) }); err != nil {
		t.Fatal(err)
	}
	if len(slots) != 3 || slots[0] != slots[1] || slots[1] != slots[2] {
		t.Fatalf("the three frames came in slots %v, not joined in one", slots)
	}
	send()
	ms := make([]ipv4.Message, 8)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1500)}
		ms[i].OOB = make([]byte, 128)
	}
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got [][]byte
	for len(got) < 3 {
		n, err := r.conn.ReadBatch(ms, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms[:n] {
			if a, ok := r.conn.Resolve(m.Addr); !ok || a.Peer != id {
				t.Fatalf("packet from %v, want the relayed peer", m.Addr)
			}
			got = append(got, append([]byte(nil), m.Buffers[0][:m.N]...))
		}
	}
	for i, p := range got {
		if !bytes.Equal(p, bytes.Repeat([]byte{byte(0xc0 + i)}, 100)) {
			t.Fatalf("packet %d is % x", i, p[:min(len(p), 8)])
		}
	}
}
