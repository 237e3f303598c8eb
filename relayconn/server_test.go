package relayconn

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/connetd/connetd/wire"
)

func udpOn(t testing.TB, ip string) *net.UDPConn {
	t.Helper()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func apOf(u *net.UDPConn) netip.AddrPort { return u.LocalAddr().(*net.UDPAddr).AddrPort() }

func frameTo(id byte, payload []byte) []byte {
	f := make([]byte, wire.RelayFrameHeader, wire.RelayFrameHeader+len(payload))
	f[0] = wire.RelayFrameData
	for i := 1; i < wire.RelayFrameHeader; i++ {
		f[i] = id
	}
	return append(f, payload...)
}

func startServerConn(t *testing.T, u *net.UDPConn, r Router) *ServerConn {
	t.Helper()
	s, err := NewServer(u, r)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readWithin(t *testing.T, u *net.UDPConn, b []byte) (int, netip.AddrPort) {
	t.Helper()
	_ = u.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := u.ReadFromUDPAddrPort(b)
	if err != nil {
		t.Fatal(err)
	}
	return n, from
}

// A batch of frames is forwarded in order, rewritten as the router says,
// and only the QUIC packets among them reach the reader.
func TestServerConnForwardsBatchAndReturnsQUIC(t *testing.T) {
	u, src, dst := udpOn(t, "127.0.0.1"), udpOn(t, "127.0.0.1"), udpOn(t, "127.0.0.1")
	s := startServerConn(t, u, func(f []byte, from netip.AddrPort, _ netip.Addr) (Dest, bool) {
		if from != apOf(src) || f[1] != 7 {
			return Dest{}, false
		}
		f[1] = 9 // the router's in-place rewrite is what goes out
		return Dest{Addr: apOf(dst)}, true
	})
	const frames = 150 // more than one batch
	for i := range frames {
		if _, err := src.WriteToUDPAddrPort(frameTo(7, []byte{0x40, byte(i)}), apOf(u)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 { // a dropped frame and a QUIC packet now and then
			_, _ = src.WriteToUDPAddrPort(frameTo(8, []byte{0x40}), apOf(u))
			_, _ = src.WriteToUDPAddrPort([]byte{0xc0, byte(i)}, apOf(u))
		}
	}
	// quic-go's reader runs all the time; so does this one.
	quic := make(chan []byte, 16)
	done := make(chan error, 1)
	go func() {
		ms := make([]ipv4.Message, 8)
		for i := range ms {
			ms[i].Buffers = [][]byte{make([]byte, 1452)}
			ms[i].OOB = make([]byte, 128)
		}
		for {
			n, err := s.ReadBatch(ms, 0)
			if err != nil {
				done <- err
				return
			}
			for _, m := range ms[:n] {
				if m.Addr.(*net.UDPAddr).AddrPort() != apOf(src) {
					quic <- nil
				}
				quic <- append([]byte(nil), m.Buffers[0][:m.N]...)
			}
		}
	}()
	defer func() { s.Close(); <-done }()
	for _, want := range [][]byte{{0xc0, 0}, {0xc0, 50}, {0xc0, 100}} {
		select {
		case got := <-quic:
			if !bytes.Equal(got, want) {
				t.Fatalf("ReadBatch returned % x, want % x from %s", got, want, apOf(src))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no QUIC packet from ReadBatch")
		}
	}
	b := make([]byte, 2048)
	for i := range frames {
		n, _ := readWithin(t, dst, b)
		if want := frameTo(7, []byte{0x40, byte(i)}); n != len(want) || b[1] != 9 || b[2] != 7 || b[n-1] != byte(i) {
			t.Fatalf("frame %d arrived as % x", i, b[:n])
		}
	}
}

// On a wildcard bind a frame leaves from the address its destination
// talks to, whatever the kernel would pick.
func TestServerConnSendsFromDestinationsLocalAddress(t *testing.T) {
	u, client := udpOn(t, "0.0.0.0"), udpOn(t, "127.0.0.1")
	s := startServerConn(t, u, func(_ []byte, from netip.AddrPort, local netip.Addr) (Dest, bool) {
		return Dest{Addr: from, Local: local}, true // echo
	})
	done := make(chan error, 1)
	go func() {
		_, _, err := s.ReadFrom(make([]byte, 2048))
		done <- err
	}()
	defer func() { s.Close(); <-done }()
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(ip), apOf(u).Port())
		if _, err := client.WriteToUDPAddrPort(frameTo(1, []byte{0x40}), to); err != nil {
			t.Fatal(err)
		}
		_, from := readWithin(t, client, make([]byte, 2048))
		if from != to {
			t.Fatalf("frame sent to %s came back from %s", to, from)
		}
	}
}

func TestServerConnAnswersReflectRequests(t *testing.T) {
	u, client := udpOn(t, "0.0.0.0"), udpOn(t, "127.0.0.1")
	s := startServerConn(t, u, func([]byte, netip.AddrPort, netip.Addr) (Dest, bool) { return Dest{}, false })
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), apOf(u).Port())
	req := wire.AppendReflect(nil, wire.Reflect{TxID: [12]byte{1, 2, 3}})
	if _, err := client.WriteToUDPAddrPort(req, to); err != nil {
		t.Fatal(err)
	}
	marker := []byte{0xc0, 9}
	if _, err := client.WriteToUDPAddrPort(marker, to); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2048)
	n, _, err := s.ReadFrom(b)
	if err != nil || !bytes.Equal(b[:n], marker) {
		t.Fatalf("ReadFrom = % x, %v; the reflect request should not reach QUIC", b[:n], err)
	}
	n, from := readWithin(t, client, b)
	r, err := wire.ParseReflect(b[:n])
	if err != nil || !r.Reply || r.TxID != [12]byte{1, 2, 3} || r.Observed != apOf(client) || from != to {
		t.Fatalf("reply %+v from %s, %v; want observed %v from %s", r, from, err, apOf(client), to)
	}
}

func TestServerConnReadDeadline(t *testing.T) {
	s := startServerConn(t, udpOn(t, "127.0.0.1"), func([]byte, netip.AddrPort, netip.Addr) (Dest, bool) { return Dest{}, false })
	_ = s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, _, err := s.ReadFrom(make([]byte, 100))
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("err = %v, want a net.Error timeout (quic-go checks for one)", err)
	}
}

// Forwarding allocates nothing per frame: a read that forwards a whole
// batch of frames allocates only for the one QUIC packet it returns (its
// net.Addr, which quic-go wants).
func TestServerConnForwardsWithoutAllocating(t *testing.T) {
	u, src, dst := udpOn(t, "127.0.0.1"), udpOn(t, "127.0.0.1"), udpOn(t, "127.0.0.1")
	s := startServerConn(t, u, func([]byte, netip.AddrPort, netip.Addr) (Dest, bool) {
		return Dest{Addr: apOf(dst)}, true
	})
	_ = dst.SetReadBuffer(4 << 20)
	ms := []ipv4.Message{{Buffers: [][]byte{make([]byte, 1452)}, OOB: make([]byte, 128)}}
	frame, quic := frameTo(1, make([]byte, 1200)), []byte{0xc0}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	allocs := testing.AllocsPerRun(20, func() {
		for range 40 {
			_, _ = src.WriteToUDPAddrPort(frame, apOf(u))
		}
		_, _ = src.WriteToUDPAddrPort(quic, apOf(u))
		for {
			n, err := s.ReadBatch(ms, 0)
			if err != nil {
				t.Fatal(err)
			}
			if n == 1 && ms[0].N == 1 {
				return
			}
		}
	})
	t.Logf("%.1f allocations per run", allocs)
	if allocs > 3 {
		t.Fatalf("%.1f allocations per 40 forwarded frames and one QUIC packet", allocs)
	}
}
