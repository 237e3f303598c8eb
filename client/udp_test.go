package client_test

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/internal/udptest"
	"github.com/connetd/connetd/wire"
)

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

func udpPair(t *testing.T, l *lab, route string, dcfg, scfg client.UDPConfig) (src, dst *client.Client, echo *udptest.Echo, srcAddr string) {
	t.Helper()
	echo = udptest.ListenEcho(t, "127.0.0.1:0")
	dst = l.client("dst", client.Config{}, func(c *client.Client) {
		must(t, c.AddDestination("dns", client.DestinationConfig{Addr: echo.Addr(), Route: route, Proto: wire.ProtoUDP, UDP: dcfg}))
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
			c := udptest.Dial(t, addr)
			must(t, udptest.Exchange(c, 2000, maxPayload, 16, "one"))

			// Many flows at once: each gets only its own replies.
			var wg sync.WaitGroup
			for i := range 20 {
				fc := udptest.Dial(t, addr)
				wg.Go(func() {
					if err := udptest.Exchange(fc, 50, 200, 4, fmt.Sprintf("flow%02d", i)); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			if n := echo.Clients(); n != 21 {
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
			must(t, udptest.Exchange(c, 10, 100, 1, "after"))
		})
	}
}

func TestUDPFlowIdleTimeoutAndCap(t *testing.T) {
	l := newLab(t)
	src, dst, echo, addr := udpPair(t, l, wire.RouteAny,
		client.UDPConfig{IdleTimeout: 400 * time.Millisecond, MaxFlows: 2}, client.UDPConfig{IdleTimeout: time.Hour})
	a, b, c := udptest.Dial(t, addr), udptest.Dial(t, addr), udptest.Dial(t, addr)
	must(t, udptest.Exchange(a, 5, 100, 1, "a"))
	must(t, udptest.Exchange(b, 5, 100, 1, "b"))
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
	before := echo.Clients()
	must(t, udptest.Exchange(a, 5, 100, 1, "a-again"))
	if echo.Clients() != before+1 {
		t.Fatalf("after the idle timeout the service saw %d client addresses, want %d (a new socket)", echo.Clients(), before+1)
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

// A flow outlives its path: when the direct path dies it goes on through
// the relay, and back to direct when a path is punched again, with the
// same socket at the destination throughout (the service sees one client
// address) and no datagram lost between exchanges.
func TestUDPFlowMovesBetweenPathsKeepingItsSocket(t *testing.T) {
	l := newLab(t)
	src, _, echo, addr := udpPair(t, l, wire.RouteAny, client.UDPConfig{}, client.UDPConfig{})
	c := udptest.Dial(t, addr)
	must(t, udptest.Exchange(c, 20, 500, 1, "direct"))
	byPath := func() map[string]int64 {
		out := map[string]int64{}
		for _, p := range sourceStatus(t, src, "dns").Peers {
			for _, b := range p.ByPath {
				out[b.Path] += b.BytesOut
			}
		}
		return out
	}
	// The relay path is dialed alongside the direct one; the flow needs
	// it up to have somewhere to go.
	relayUp := regexp.MustCompile(`msg="peer path up" role=src .*path=relay`)
	waitUntil(t, 10*time.Second, "the relay path", func() bool { return relayUp.MatchString(l.logs.String()) })
	src.DropDirectPaths(time.Second)
	// All at once, right as the direct path died: the flow is still on it
	// for some of them, which must wait for its next path, not be lost.
	must(t, udptest.Exchange(c, 20, 500, 20, "relayed"))
	if got := byPath(); got["relay"] == 0 {
		t.Fatalf("after the direct path died no bytes went through the relay: %v", got)
	}
	waitPath(t, src, "dns", "direct")
	waitUntil(t, 10*time.Second, "the flow to move back to direct", func() bool {
		relayed := byPath()["relay"]
		must(t, udptest.Exchange(c, 5, 500, 1, "back"))
		return byPath()["relay"] == relayed
	})
	if n := echo.Clients(); n != 1 {
		t.Fatalf("the service saw %d client addresses across the moves, want 1", n)
	}
	l.logs.WaitFor(t, "udp flow moved", time.Second)
}

// A service's reply that comes while its flow has no path (the direct
// path died, and the route allows no other) is held by the destination
// and delivered once the source is back on a new path, as are the
// client's datagrams sent meanwhile.
func TestUDPDatagramsWaitForTheFlowsNextPath(t *testing.T) {
	l := newLab(t)
	echo := udptest.ListenSlowEcho(t, "127.0.0.1:0", 300*time.Millisecond)
	l.client("dst", client.Config{}, func(c *client.Client) {
		must(t, c.AddDestination("dns", client.DestinationConfig{Addr: echo.Addr(), Route: wire.RouteDirect, Proto: wire.ProtoUDP}))
	})
	src := l.client("src", client.Config{}, func(c *client.Client) {
		must(t, c.AddSource("dns", client.SourceConfig{Addr: "127.0.0.1:0", Route: wire.RouteDirect, Proto: wire.ProtoUDP}))
	})
	waitPath(t, src, "dns", "direct")
	c := udptest.Dial(t, sourceStatus(t, src, "dns").Addr)
	must(t, udptest.Exchange(c, 3, 500, 1, "before"))
	// One datagram on its way to the service, then the path goes for a
	// second: the reply comes at the destination while the flow has none.
	if _, err := c.Write([]byte("during the gap")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	src.DropDirectPaths(time.Second)
	if _, err := c.Write([]byte("sent with no path")); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < 2 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("replies so far %v: %v", got, err)
		}
		got[string(buf[:n])] = true
	}
	if !got["during the gap"] || !got["sent with no path"] {
		t.Fatalf("replies %v", got)
	}
	if n := echo.Clients(); n != 1 {
		t.Fatalf("the service saw %d client addresses, want 1", n)
	}
}
