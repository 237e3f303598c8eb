package control_test

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/wire"
)

// pair registers a source and a destination of "svc" with the given routes.
func pair(t *testing.T, s *server, srcRoute, dstRoute string) (src, dst *session) {
	src, dst = s.join(t, "a"), s.join(t, "b")
	src.send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: srcRoute})
	dst.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: dstRoute})
	next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 1 })
	next(t, dst, func(m *wire.Peers) bool { return len(m.Peers) == 1 })
	return src, dst
}

func TestPunchTellsBothSidesAndReleasesThemTogetherOnceBothAreReady(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"a", "b"}}})
	src, dst := pair(t, s, "any", "any")
	dst.send(t, &wire.Candidates{Direct: []string{"10.0.0.2:19192"}, NAT: wire.NATHard})
	next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 1 && m.Peers[0].NAT == wire.NATHard })

	src.send(t, &wire.PunchRequest{Peer: dst.id.ID, Spray: wire.PunchSprayDestination})
	ps := next(t, src, func(m *wire.Punch) bool { return true })
	pd := next(t, dst, func(m *wire.Punch) bool { return true })
	if !bytes.Equal(ps.Nonce, pd.Nonce) || len(ps.Nonce) != wire.PunchNonceLen {
		t.Fatalf("nonces %x / %x", ps.Nonce, pd.Nonce)
	}
	if ps.Peer != dst.id.ID || pd.Peer != src.id.ID || !ps.Dial || pd.Dial {
		t.Fatalf("punch to source %+v, to destination %+v", ps, pd)
	}
	if ps.NAT != wire.NATHard || len(ps.Direct) != 2 || ps.Direct[1] != "10.0.0.2:19192" {
		t.Fatalf("the source was not given the destination's candidates and NAT: %+v", ps)
	}
	if ps.Mode != wire.PunchModeRandom || pd.Mode != wire.PunchModeSpray {
		t.Fatalf("modes %q / %q for a destination-spray attempt", ps.Mode, pd.Mode)
	}
	// One side ready: no go yet.
	src.send(t, &wire.PunchReady{Nonce: ps.Nonce})
	srcIn, dstIn := inbox(src), inbox(dst)
	if m := waitFor(srcIn, 400*time.Millisecond, isGo); m != nil {
		t.Fatal("go sent before the destination was ready")
	}
	readyAt := time.Now()
	dst.send(t, &wire.PunchReady{Nonce: pd.Nonce})
	g1, g2 := waitFor(srcIn, 5*time.Second, isGo), waitFor(dstIn, 5*time.Second, isGo)
	if g1 == nil || g2 == nil {
		t.Fatal("no go after both were ready")
	}
	if !bytes.Equal(g1.(*wire.PunchGo).Nonce, ps.Nonce) || !bytes.Equal(g2.(*wire.PunchGo).Nonce, ps.Nonce) {
		t.Fatal("go for another attempt")
	}
	if time.Since(readyAt) > time.Second {
		t.Fatalf("go came %v after both were ready", time.Since(readyAt))
	}
}

// inbox reads a session's messages from now on, so that waiting with a
// time limit never leaves half a frame read.
func inbox(s *session) <-chan wire.Message {
	ch := make(chan wire.Message, 64)
	_ = s.st.SetReadDeadline(time.Time{})
	go func() {
		defer close(ch)
		for {
			m, err := wire.Read(s.st, wire.ControlToClient)
			if err != nil {
				return
			}
			ch <- m
		}
	}()
	return ch
}

// waitFor returns the first message from in that want takes, or nil when
// none comes within d.
func waitFor(in <-chan wire.Message, d time.Duration, want func(wire.Message) bool) wire.Message {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-in:
			if !ok {
				return nil
			}
			if want(m) {
				return m
			}
		case <-timer.C:
			return nil
		}
	}
}

func TestPunchGoesAnywayWhenOneSideNeverAnswers(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"a", "b"}}})
	src, dst := pair(t, s, "any", "any")
	src.send(t, &wire.PunchRequest{Peer: dst.id.ID})
	ps := next(t, src, func(m *wire.Punch) bool { return true })
	start := time.Now()
	src.send(t, &wire.PunchReady{Nonce: ps.Nonce})
	next(t, src, func(m *wire.PunchGo) bool { return true })
	if el := time.Since(start); el < time.Second || el > 4*time.Second {
		t.Fatalf("go after %v; want control's ready timeout (2s)", el)
	}
}

func TestPunchOnlyBetweenASourceAndItsDirectCapableDestination(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"a", "b"}}})
	src, dst := pair(t, s, "any", "relay")
	// A destination may not start punching toward its source, and a
	// relay-only pair never punches.
	dst.send(t, &wire.PunchRequest{Peer: src.id.ID})
	src.send(t, &wire.PunchRequest{Peer: dst.id.ID})
	for _, sess := range []*session{src, dst} {
		if m := waitFor(inbox(sess), 500*time.Millisecond, isPunch); m != nil {
			t.Fatalf("unauthorized punch was coordinated: %+v", m)
		}
	}
}

func TestControlAnswersReflectRequestsOnItsClientSocket(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"a"}}})
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	req := wire.AppendReflect(nil, wire.Reflect{TxID: [12]byte{7}})
	b := make([]byte, 100)
	// The transport starts reading non-QUIC packets when ServeClients runs;
	// retry briefly in case this races its start.
	for range 20 {
		if _, err := u.WriteToUDPAddrPort(req, s.addr.AddrPort()); err != nil {
			t.Fatal(err)
		}
		_ = u.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := u.ReadFromUDPAddrPort(b)
		if err != nil {
			continue
		}
		r, err := wire.ParseReflect(b[:n])
		want := u.LocalAddr().(*net.UDPAddr).AddrPort()
		if err != nil || r.TxID != [12]byte{7} || r.Observed != netip.AddrPortFrom(want.Addr().Unmap(), want.Port()) {
			t.Fatalf("reflect reply %+v, %v; want %v", r, err, want)
		}
		return
	}
	t.Fatal("no reflect reply")
}

func isGo(m wire.Message) bool    { _, ok := m.(*wire.PunchGo); return ok }
func isPunch(m wire.Message) bool { _, ok := m.(*wire.Punch); return ok }
