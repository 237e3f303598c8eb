package relayconn

import (
	"bytes"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/connetd/connetd/internal/testenv"
)

// gsoOOB is the control message for a send the kernel cuts into seg-byte
// datagrams.
func gsoOOB(seg int) []byte {
	b := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = uint16(seg)
	return b
}

// A sender using GSO reaches a GRO socket as one read of joined
// datagrams; the relay still forwards each frame and returns each QUIC
// packet among them.
func TestServerConnSplitsJoinedDatagrams(t *testing.T) {
	u, src, dst := udpOn(t, "127.0.0.1"), udpOn(t, "127.0.0.1"), udpOn(t, "127.0.0.1")
	s := startServerConn(t, u, func(f []byte, _ netip.AddrPort, _ netip.Addr) (Dest, bool) {
		return Dest{Addr: apOf(dst)}, true
	})
	if !s.rx.gro {
		testenv.Missing(t, "the kernel refused UDP_GRO")
	}
	const seg, n = 200, 10
	var burst []byte
	for i := range n {
		d := frameTo(1, make([]byte, seg-17))
		d[17] = byte(i)
		if i == 4 {
			d = bytes.Repeat([]byte{0xc0}, seg) // a QUIC packet in the middle
		}
		burst = append(burst, d...)
	}
	if _, _, err := src.WriteMsgUDPAddrPort(burst, gsoOOB(seg), apOf(u)); err != nil {
		t.Fatal(err)
	}
	ms := []ipv4.Message{{Buffers: [][]byte{make([]byte, 1452)}, OOB: make([]byte, 128)}}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, err := s.ReadBatch(ms, 0)
	if err != nil || k != 1 || ms[0].N != seg || ms[0].Buffers[0][0] != 0xc0 {
		t.Fatalf("ReadBatch = %d, %v; want the one %d-byte QUIC packet", k, err, seg)
	}
	b := make([]byte, 65536)
	for i := range n {
		if i == 4 {
			continue
		}
		got, _ := readWithin(t, dst, b)
		if got != seg || b[17] != byte(i) {
			t.Fatalf("datagram %d arrived as %d bytes, payload %d", i, got, b[17])
		}
	}
}

// BenchmarkServerConnForward forwards 1217-byte frames from a sender that
// sends one datagram per call or 32 per GSO call, with the relay's GRO
// off or on, and reports the process's CPU time per frame.
func BenchmarkServerConnForward(b *testing.B) {
	for _, gsoSend := range []bool{false, true} {
		for _, gro := range []bool{false, true} {
			name := map[bool]string{false: "plain-sender", true: "gso-sender"}[gsoSend] + "/" + map[bool]string{false: "gro-off", true: "gro-on"}[gro]
			b.Run(name, func(b *testing.B) { benchForward(b, gsoSend, gro) })
		}
	}
}

func benchForward(b *testing.B, gsoSend, gro bool) {
	u, src, dst := udpOn(b, "127.0.0.1"), udpOn(b, "127.0.0.1"), udpOn(b, "127.0.0.1")
	for _, c := range []*net.UDPConn{u, dst} {
		_ = c.SetReadBuffer(8 << 20)
	}
	raw, _ := u.SyscallConn()
	s := newServerConn(u, raw, func([]byte, netip.AddrPort, netip.Addr) (Dest, bool) { return Dest{Addr: apOf(dst)}, true },
		false, false, gro && enableGRO(raw))
	if gro && !s.rx.gro {
		b.Skip("no UDP_GRO")
	}
	done := make(chan struct{})
	go func() { // quic-go's reader
		defer close(done)
		ms := []ipv4.Message{{Buffers: [][]byte{make([]byte, 1452)}, OOB: make([]byte, 128)}}
		for {
			if _, err := s.ReadBatch(ms, 0); err != nil {
				return
			}
		}
	}()
	const seg, per = 1217, 32
	frame := frameTo(1, make([]byte, seg-17))
	burst := bytes.Repeat(frame, per)
	oob := gsoOOB(seg)
	got := make(chan int)
	go func() { // the destination counts what arrives
		buf := make([]byte, 65536)
		n := 0
		_ = dst.SetReadDeadline(time.Now().Add(time.Minute))
		for n < b.N {
			m, err := dst.Read(buf)
			if err != nil {
				break
			}
			n += m / seg
			if m%seg != 0 {
				n++
			}
		}
		got <- n
	}()
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		if gsoSend {
			k := min(per, b.N-sent)
			_, _, _ = src.WriteMsgUDPAddrPort(burst[:k*seg], oob, apOf(u))
			sent += k
		} else {
			_, _ = src.WriteToUDPAddrPort(frame, apOf(u))
			sent++
		}
		if sent%128 == 0 {
			time.Sleep(100 * time.Microsecond) // let the relay keep up: losses would flatter it
		}
	}
	var n int
	select {
	case n = <-got:
	case <-time.After(2 * time.Second):
		_ = dst.SetReadDeadline(time.Now())
		n = <-got
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(max(n, 1)), "cpu-ns/frame")
	b.ReportMetric(float64(n)/float64(b.N), "delivered")
	s.Close()
	<-done
}
