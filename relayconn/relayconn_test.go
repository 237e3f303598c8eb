package relayconn

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func addrPort(u *net.UDPConn) netip.AddrPort {
	return u.LocalAddr().(*net.UDPAddr).AddrPort()
}

func peerID(b byte) identity.ID {
	var id identity.ID
	for i := range id {
		id[i] = b ^ byte(i*7)
	}
	return id
}

func mkFrame(id identity.ID, payload []byte) []byte {
	return append(append([]byte{wire.RelayFrameData}, id[:]...), payload...)
}

// rig is a client socket (under test) with a registered relay socket and
// an unregistered stranger socket sending to it.
type rig struct {
	conn     *Conn
	relay    *net.UDPConn
	stranger *net.UDPConn
}

func newRig(t testing.TB) *rig {
	r := &rig{conn: New(listen(t)), relay: listen(t), stranger: listen(t)}
	r.conn.SetRelays([]netip.AddrPort{addrPort(r.relay)})
	return r
}

func (r *rig) send(t testing.TB, from *net.UDPConn, p []byte) {
	t.Helper()
	if _, err := from.WriteToUDPAddrPort(p, addrPort(r.conn.udp)); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) read(t testing.TB) ([]byte, net.Addr) {
	t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 65536)
	n, from, err := r.conn.ReadFrom(b)
	if err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	return b[:n], from
}

func TestFrameFromRelayBecomesPeerPacket(t *testing.T) {
	r := newRig(t)
	id := peerID(3)
	payload := []byte{0xc3, 0, 0, 0, 1, 'i', 'n', 'n', 'e', 'r'}
	r.send(t, r.relay, mkFrame(id, payload))
	got, from := r.read(t)
	want := Addr{Relay: addrPort(r.relay), Peer: id}
	if a, ok := r.conn.Resolve(from); !ok || a != want {
		t.Fatalf("from %v resolves to %#v, want %#v", from, a, want)
	}
	if v := r.conn.PeerAddr(addrPort(r.relay), id); v.String() != from.String() {
		t.Fatalf("the peer's virtual address is %v, its packet came from %v", v, from)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("payload % x, want % x", got, payload)
	}
	if d := r.conn.Describe(from); d != id.Short()+"@"+addrPort(r.relay).String() {
		t.Fatalf("Describe %q", d)
	}
}

func TestFrameFromStrangerDropped(t *testing.T) {
	r := newRig(t)
	r.send(t, r.stranger, mkFrame(peerID(1), []byte("forged")))
	marker := []byte{0x40, 'm', 'a', 'r', 'k'}
	r.send(t, r.relay, marker)
	got, from := r.read(t)
	if !bytes.Equal(got, marker) {
		t.Fatalf("first packet read is % x from %v; the stranger's frame was not dropped", got, from)
	}
}

func TestFrameBeforeAnyRelayDropped(t *testing.T) {
	r := newRig(t)
	r.conn.SetRelays(nil)
	r.send(t, r.relay, mkFrame(peerID(1), []byte("early")))
	r.send(t, r.relay, []byte{0xc0, 1})
	if got, _ := r.read(t); !bytes.Equal(got, []byte{0xc0, 1}) {
		t.Fatalf("read % x: a frame from an address no longer registered got through", got)
	}
}

func TestMappedRelayAddressMatches(t *testing.T) {
	r := newRig(t)
	ap := addrPort(r.relay)
	r.conn.SetRelays([]netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())})
	r.send(t, r.relay, mkFrame(peerID(9), []byte{1, 2}))
	got, from := r.read(t)
	if a, ok := r.conn.Resolve(from); !ok || a.Relay != ap || !bytes.Equal(got, []byte{1, 2}) {
		t.Fatalf("got % x from %#v", got, from)
	}
}

func TestQUICPacketsPassThrough(t *testing.T) {
	r := newRig(t)
	for _, sender := range []*net.UDPConn{r.relay, r.stranger} {
		for _, p := range [][]byte{
			{0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8},        // long header
			append([]byte{0x41}, bytes.Repeat([]byte{7}, 30)...), // short header
			// A frame type but no packet after the header: not a frame.
			mkFrame(peerID(2), nil),
			{0x01},
		} {
			r.send(t, sender, p)
			got, from := r.read(t)
			ua, ok := from.(*net.UDPAddr)
			if !ok || ua.AddrPort() != addrPort(sender) {
				t.Fatalf("from %#v, want %s", from, addrPort(sender))
			}
			if !bytes.Equal(got, p) {
				t.Fatalf("got % x, want % x unchanged", got, p)
			}
		}
	}
}

func TestWriteToPeerFrames(t *testing.T) {
	r := newRig(t)
	id := peerID(5)
	for _, size := range []int{1, 1200, 3000} {
		p := bytes.Repeat([]byte{0xab}, size)
		p[0] = 0xc3
		n, err := r.conn.WriteTo(p, r.conn.PeerAddr(addrPort(r.relay), id))
		if err != nil || n != len(p) {
			t.Fatalf("WriteTo = %d, %v; want %d", n, err, len(p))
		}
		b := make([]byte, 65536)
		_ = r.relay.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, from, err := r.relay.ReadFromUDPAddrPort(b)
		if err != nil {
			t.Fatal(err)
		}
		if from != addrPort(r.conn.udp) {
			t.Fatalf("frame came from %s", from)
		}
		if want := mkFrame(id, p); !bytes.Equal(b[:m], want) {
			t.Fatalf("size %d: wire bytes\n% x\nwant\n% x", size, b[:min(m, 40)], want[:min(len(want), 40)])
		}
	}
}

func TestWriteToUDPAddrIsRaw(t *testing.T) {
	r := newRig(t)
	p := []byte{0xc0, 1, 2, 3}
	if n, err := r.conn.WriteTo(p, net.UDPAddrFromAddrPort(addrPort(r.relay))); err != nil || n != len(p) {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
	b := make([]byte, 100)
	_ = r.relay.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := r.relay.ReadFromUDPAddrPort(b)
	if err != nil || !bytes.Equal(b[:n], p) {
		t.Fatalf("relay read % x, %v", b[:n], err)
	}
	if _, err := r.conn.WriteTo(p, &net.TCPAddr{}); err == nil {
		t.Fatal("WriteTo accepted a TCP address")
	}
}

func TestReadDeadline(t *testing.T) {
	r := newRig(t)
	_ = r.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, _, err := r.conn.ReadFrom(make([]byte, 100))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
}

// FuzzRelayConnRead sends arbitrary datagrams to a Conn from its relay and
// from a stranger. ReadFrom must never panic or hang and must return
// exactly: a frame's packet as from Addr when the relay sent a frame, the
// datagram unchanged from its UDP address when it is not a frame, and
// nothing when a stranger sent a frame.
func FuzzRelayConnRead(f *testing.F) {
	f.Add(mkFrame(peerID(1), []byte{0xc3, 0, 0, 0, 1}), true)
	f.Add(mkFrame(peerID(1), []byte{0xc3, 0, 0, 0, 1}), false)
	f.Add(mkFrame(peerID(2), nil), true)
	f.Add([]byte{0x41, 1, 2, 3}, true)
	f.Add([]byte{0x01}, false)
	f.Add([]byte{}, true)
	f.Add(bytes.Repeat([]byte{0x01}, 1500), true)
	r := newRig(f)
	buf := make([]byte, 65536)
	marker := []byte{0x40, 'e', 'n', 'd'}
	f.Fuzz(func(t *testing.T, data []byte, fromRelay bool) {
		if len(data) > 1472 {
			data = data[:1472]
		}
		sender := r.stranger
		if fromRelay {
			sender = r.relay
		}
		r.send(t, sender, data)
		// The marker follows from the relay, so that a dropped datagram
		// shows as the marker coming first rather than as a hang.
		r.send(t, r.relay, marker)
		read := func() ([]byte, net.Addr) {
			_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := r.conn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("ReadFrom: %v", err)
			}
			return buf[:n], from
		}
		isFrame := len(data) > 17 && data[0] == 0x01
		switch {
		case isFrame && !fromRelay, len(data) == 0:
			// dropped: a stranger's frame, or nothing a QUIC stack could use
		case isFrame:
			got, from := read()
			a, ok := r.conn.Resolve(from)
			if !ok || a.Relay != addrPort(r.relay) || !bytes.Equal(a.Peer[:], data[1:17]) || !bytes.Equal(got, data[17:]) {
				t.Fatalf("frame % x read as % x from %#v", data, got, from)
			}
		default:
			got, from := read()
			ua, ok := from.(*net.UDPAddr)
			if !ok || ua.AddrPort() != addrPort(sender) || !bytes.Equal(got, data) {
				t.Fatalf("datagram % x read as % x from %#v", data, got, from)
			}
		}
		if got, from := read(); !bytes.Equal(got, marker) {
			t.Fatalf("expected the marker, read % x from %#v (input % x, from relay %v)", got, from, data, fromRelay)
		}
	})
}
