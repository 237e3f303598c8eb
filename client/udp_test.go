package client_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/wire"
)

// udpEchoServer answers every datagram with itself, from one socket, and
// records each client address it saw.
type udpEchoServer struct {
	pc    *net.UDPConn
	mu    sync.Mutex
	peers map[string]int
}

func newUDPEcho(t *testing.T) *udpEchoServer {
	t.Helper()
	s := &udpEchoServer{pc: udp(t), peers: map[string]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { s.pc.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 1<<16)
		for {
			n, from, err := s.pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.peers[from.String()]++
			s.mu.Unlock()
			_, _ = s.pc.WriteToUDPAddrPort(buf[:n], from)
		}
	})
	return s
}

func (s *udpEchoServer) addr() string { return s.pc.LocalAddr().String() }

func (s *udpEchoServer) clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.peers)
}

func sourceStatus(t *testing.T, c *client.Client, name string) client.EndpointStatus {
	t.Helper()
	for _, s := range c.Status().Sources {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no source %s", name)
	return client.EndpointStatus{}
}

func destinationStatus(t *testing.T, c *client.Client, name string) client.EndpointStatus {
	t.Helper()
	for _, d := range c.Status().Destinations {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no destination %s", name)
	return client.EndpointStatus{}
}

// waitUntil polls cond for up to d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dialUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends n datagrams of random sizes in [1, maxSize] with at most
// window outstanding, and checks that each comes back with its content.
func exchange(t *testing.T, c *net.UDPConn, n, maxSize, window int, tag string) {
	t.Helper()
	sent := map[uint32][]byte{}
	buf := make([]byte, 1<<16)
	next, got := 0, 0
	for got < n {
		for next < n && next-got < window {
			size := max(8, 1+rand.IntN(maxSize))
			b := make([]byte, size)
			for i := range b {
				b[i] = byte(rand.Uint32())
			}
			copy(b, fmt.Sprintf("%08x", next))
			copy(b[8:], tag)
			b = b[:size]
			sent[uint32(next)] = b
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			next++
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%s: after %d of %d datagrams came back: %v", tag, got, n, err)
		}
		var seq uint32
		if _, err := fmt.Sscanf(string(buf[:8]), "%08x", &seq); err != nil {
			t.Fatalf("%s: reply without a sequence number: %q", tag, buf[:min(m, 16)])
		}
		want, ok := sent[seq]
		if !ok || !bytes.Equal(buf[:m], want) {
			t.Fatalf("%s: datagram %d came back other than sent (%d bytes, sent %d)", tag, seq, m, len(want))
		}
		delete(sent, seq)
		got++
	}
}

func udpPair(t *testing.T, l *lab, route string, dcfg, scfg client.UDPConfig) (src, dst *client.Client, echo *udpEchoServer, srcAddr string) {
	t.Helper()
	echo = newUDPEcho(t)
	dst = l.client("dst", client.Config{}, func(c *client.Client) {
		must(t, c.AddDestination("dns", client.DestinationConfig{Addr: echo.addr(), Route: route, Proto: wire.ProtoUDP, UDP: dcfg}))
	})
	src = l.client("src", client.Config{}, func(c *client.Client) {
		must(t, c.AddSource("dns", client.SourceConfig{Addr: "127.0.0.1:0", Route: route, Proto: wire.ProtoUDP, UDP: scfg}))
	})
	path := route
	if route == wire.RouteAny {
		path = "direct"
	}
	waitPath(t, src, "dns", path)
	return src, dst, echo, sourceStatus(t, src, "dns").Addr
}

func TestUDPFlowsDirectAndRelayed(t *testing.T) {
	for _, route := range []string{wire.RouteDirect, wire.RouteRelay} {
		t.Run(route, func(t *testing.T) {
			l := newLab(t)
			src, dst, echo, addr := udpPair(t, l, route, client.UDPConfig{}, client.UDPConfig{})
			maxPayload := sourceStatus(t, src, "dns").UDP.MaxPayload
			if maxPayload < 1100 || maxPayload > 1452 {
				t.Fatalf("max payload %d: not what a QUIC packet on loopback carries", maxPayload)
			}
			c := dialUDP(t, addr)
			exchange(t, c, 2000, maxPayload, 16, "one")

			// Many flows at once: each gets only its own replies.
			var wg sync.WaitGroup
			for i := range 20 {
				fc := dialUDP(t, addr)
				wg.Go(func() { exchange(t, fc, 50, 200, 4, fmt.Sprintf("flow%02d", i)) })
			}
			wg.Wait()
			if n := echo.clients(); n != 21 {
				t.Fatalf("the service saw %d client addresses, want one per flow (21)", n)
			}
			st, ds := sourceStatus(t, src, "dns"), destinationStatus(t, dst, "dns")
			if st.Proto != "udp" || st.UDP.Flows != 21 || ds.UDP.Flows != 21 {
				t.Fatalf("flows: source %+v, destination %+v; want 21 each", st.UDP, ds.UDP)
			}
			if st.BytesOut == 0 || st.BytesOut != st.BytesIn || ds.BytesIn != st.BytesOut {
				t.Fatalf("bytes: source out %d in %d, destination in %d", st.BytesOut, st.BytesIn, ds.BytesIn)
			}
			if len(st.Peers) != 1 || len(st.Peers[0].ByPath) != 1 || st.Peers[0].ByPath[0].Path != route {
				t.Fatalf("bytes by path: %+v, want all on %s", st.Peers, route)
			}

			// A datagram larger than the path carries is dropped and
			// counted, never cut. (Path MTU discovery may have grown
			// the limit meanwhile: take it again.)
			maxPayload = sourceStatus(t, src, "dns").UDP.MaxPayload
			if _, err := c.Write(make([]byte, maxPayload+1)); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, 5*time.Second, "oversize count", func() bool { return sourceStatus(t, src, "dns").UDP.DroppedOversize == 1 })
			exchange(t, c, 10, 100, 1, "after")
		})
	}
}

func TestUDPFlowIdleTimeoutAndCap(t *testing.T) {
	l := newLab(t)
	src, dst, echo, addr := udpPair(t, l, wire.RouteAny,
		client.UDPConfig{IdleTimeout: 400 * time.Millisecond, MaxFlows: 2}, client.UDPConfig{IdleTimeout: time.Hour})
	a, b, c := dialUDP(t, addr), dialUDP(t, addr), dialUDP(t, addr)
	exchange(t, a, 5, 100, 1, "a")
	exchange(t, b, 5, 100, 1, "b")
	// A third flow is over the destination's cap: refused and counted.
	if _, err := c.Write([]byte("refused-flow")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := c.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a flow over the cap got a reply (%d bytes)", n)
	}
	waitUntil(t, 5*time.Second, "refused flow counted", func() bool { return destinationStatus(t, dst, "dns").UDP.FlowsRefused >= 1 })
	l.logs.WaitFor(t, "the destination holds its maximum of flows", 5*time.Second)

	// Idle: the destination closes the flows' sockets, the source hears
	// of it, and the next datagram is a new flow (a new socket at the
	// destination, so the service sees a new client port).
	waitUntil(t, 5*time.Second, "flows to idle out", func() bool {
		return destinationStatus(t, dst, "dns").UDP.Flows == 0 && sourceStatus(t, src, "dns").UDP.Flows == 0
	})
	before := echo.clients()
	exchange(t, a, 5, 100, 1, "a-again")
	if echo.clients() != before+1 {
		t.Fatalf("after the idle timeout the service saw %d client addresses, want %d (a new socket)", echo.clients(), before+1)
	}
}

func TestUDPSourceFindingOnlyATCPDestination(t *testing.T) {
	l := newLab(t)
	l.client("dst", client.Config{}, func(c *client.Client) {
		must(t, c.AddDestination("svc", client.DestinationConfig{Addr: echoServer(t)}))
	})
	src := l.client("src", client.Config{}, func(c *client.Client) {
		must(t, c.AddSource("svc", client.SourceConfig{Addr: "127.0.0.1:0", Proto: wire.ProtoUDP}))
	})
	waitUntil(t, 10*time.Second, "mismatch in status", func() bool {
		return strings.Contains(sourceStatus(t, src, "svc").Mismatch, "carrying tcp, not udp")
	})
	l.logs.WaitFor(t, "protocol mismatch", 2*time.Second)
	if ps := sourceStatus(t, src, "svc").Peers; len(ps) != 0 {
		t.Fatalf("a tcp destination is a peer of a udp source: %+v", ps)
	}
}
