package client_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/wire"
)

// steadyEcho sends total bytes of a seeded random pattern through addr
// (an echo service behind a tunnel) at about rate bytes per second, while
// reading the echo back; during() runs once the flow is under way. It
// returns the longest gap between two reads of echoed bytes, and fails
// the test if a byte differs or the connection ends early.
func steadyEcho(t *testing.T, addr string, total, rate int, during func()) time.Duration {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	rng := rand.NewChaCha8([32]byte{7})
	sent := make([]byte, total)
	_, _ = rng.Read(sent)
	writeErr := make(chan error, 1)
	go func() { // ends when it has written everything or the connection fails
		const piece = 16 << 10
		tick := time.Duration(float64(time.Second) * piece / float64(rate))
		for off := 0; off < total; off += piece {
			if _, err := c.Write(sent[off:min(off+piece, total)]); err != nil {
				writeErr <- err
				return
			}
			time.Sleep(tick)
		}
		writeErr <- c.(*net.TCPConn).CloseWrite()
	}()
	got := make([]byte, 0, total)
	buf := make([]byte, 64<<10)
	var longest time.Duration
	last := time.Now()
	started := false
	for len(got) < total {
		n, err := c.Read(buf)
		if n > 0 {
			now := time.Now()
			longest = max(longest, now.Sub(last))
			last = now
			got = append(got, buf[:n]...)
			if !started && len(got) > total/8 {
				started = true
				during()
				last = time.Now()
			}
		}
		if err != nil {
			t.Fatalf("echo ended after %d of %d bytes: %v", len(got), total, err)
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("after the echo: %v, want EOF", err)
	}
	if !bytes.Equal(got, sent) {
		i := 0
		for i < total && got[i] == sent[i] {
			i++
		}
		t.Fatalf("echo differs from byte %d on (sha256 %x, sent %x)", i, sha256.Sum256(got), sha256.Sum256(sent))
	}
	return longest
}

func flowMoves(c *client.Client) map[string]int64 { return c.Status().FlowMoves.Counts }

// waitMoves waits until c counted at least n moves from old to new.
func waitMoves(t *testing.T, c *client.Client, move string, n int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if flowMoves(c)[move] >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s move: %+v", move, c.Status().FlowMoves)
}

// One TCP connection, carried while its direct path is dropped and comes
// back: it moves to the relay, then back to the new direct path, and ends
// intact. Both clients report the moves.
func TestFlowMovesBetweenDirectAndRelay(t *testing.T) {
	dst, src, addr := echoPair(t, nil)
	stall := steadyEcho(t, addr, 24<<20, 6<<20, func() {
		src.DropDirectPaths(time.Second)
		waitMoves(t, src, "direct→relay", 1)
		waitMoves(t, src, "relay→direct", 1)
	})
	t.Logf("longest stall %v; source moves %+v; destination moves %+v", stall, src.Status().FlowMoves, dst.Status().FlowMoves)
	if flowMoves(dst)["direct→relay"] < 1 || flowMoves(dst)["relay→direct"] < 1 {
		t.Errorf("the destination did not see both moves: %+v", dst.Status().FlowMoves)
	}
}

// echoPair runs a destination of "svc" in front of an echo service
// (prepared by dstSetup, when given, before it runs) and a source of it,
// and waits until the source has a direct and a relayed path; it returns
// both clients and the source's address.
func echoPair(t *testing.T, dstSetup func(*client.Client)) (dst, src *client.Client, addr string) {
	t.Helper()
	l := newLab(t)
	svc := echoServer(t)
	dst = l.client("dst", client.Config{}, func(c *client.Client) {
		if dstSetup != nil {
			dstSetup(c)
		}
		must(t, c.AddDestination("svc", client.DestinationConfig{Addr: svc}))
	})
	addr = freeTCP(t)
	src = l.client("src", client.Config{}, func(c *client.Client) {
		must(t, c.AddSource("svc", client.SourceConfig{Addr: addr}))
	})
	waitPath(t, src, "svc", "direct")
	waitRelayUp(t, src, "svc")
	return dst, src, addr
}

// waitRelayUp waits until the source has a relayed connection to its
// destination besides the direct one (status lists both).
func waitRelayUp(t *testing.T, c *client.Client, source string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.Status().Sources {
			if s.Name == source && len(s.Peers) > 0 && slices.Contains(s.Peers[0].Paths, "relay") {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("source %s has no relayed path: %+v", source, c.Status().Sources)
}

// holdConn opens a connection through addr, checks one echo, and returns
// it for the test to use after a path change.
func holdConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := dialHeld(t, addr)
	echoOn(t, c, "before")
	return c
}

// dialHeld opens a connection through addr for the test to hold, closed
// when it ends; its reads and writes time out after 20 s.
func dialHeld(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

func echoOn(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

// A destination from before resumable flows (connetd-peer/1 only): the
// connection falls back to /1, TCP flows work as before, and one whose
// direct path is dropped ends (reset), as it did, while a new one goes
// through the relay.
func TestFlowsToAnOlderPeerFallBackToV1(t *testing.T) {
	_, src, addr := echoPair(t, (*client.Client).OfferPeerV1Only)
	c := holdConn(t, addr)
	src.DropDirectPaths(time.Minute)
	buf := make([]byte, 1)
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("a /1 flow survived its path: read %d bytes", n)
	}
	echo(t, addr, "a new connection goes through the relay")
	if moves := flowMoves(src); len(moves) != 0 {
		t.Errorf("moves counted without resumable flows: %v", moves)
	}
}

// A resume the destination cannot take (it no longer holds the flow, as
// after a restart) resets the source's TCP connection at once rather than
// leaving it hanging.
func TestResumeOfAnUnknownFlowResetsTheConnection(t *testing.T) {
	dst, src, addr := echoPair(t, nil)
	c := holdConn(t, addr)
	end := dst.ForgetFlows()
	defer end()
	start := time.Now()
	src.DropDirectPaths(time.Minute)
	buf := make([]byte, 1)
	_, err := c.Read(buf)
	if err == nil {
		t.Fatal("the connection went on after its flow was refused")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the connection ended %v after the refused resume, want at once", took)
	}
	echo(t, addr, "a new connection works")
}

// The other byte-pipe kinds resume too: a tls destination (the flow's
// local side is a TLS connection) and a balancing source (its streams are
// opened by the balancer).
func TestFlowsOfOtherKindsMove(t *testing.T) {
	cases := []struct {
		name string
		dst  func(t *testing.T) client.DestinationConfig
		src  client.SourceConfig
	}{
		{"tls destination", func(t *testing.T) client.DestinationConfig {
			cert := newCert(t)
			return client.DestinationConfig{Addr: tlsEcho(t, cert), Kind: client.Kind{Scheme: "tls", TLS: &tls.Config{RootCAs: cert.Pool}}}
		}, client.SourceConfig{Addr: "127.0.0.1:0"}},
		{"balancing source", func(t *testing.T) client.DestinationConfig {
			return client.DestinationConfig{Addr: echoServer(t)}
		}, client.SourceConfig{Addr: "127.0.0.1:0", LB: client.LBConfig{Policy: client.LBRoundRobin}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := pair(t, wire.RouteAny, tc.dst(t), tc.src)
			waitRelayUp(t, src, "svc")
			steadyEcho(t, sourceStatus(t, src, "svc").Addr, 4<<20, 4<<20, func() {
				src.DropDirectPaths(time.Minute)
				waitMoves(t, src, "direct→relay", 1)
			})
		})
	}
}

// A flow opened over the relay while its destination still dials a slow
// service (an on-demand unit starting) is not moved to the direct path
// that comes up meanwhile until the destination holds it: a Resume then
// would find no flow. The first bytes get through, and the move follows.
func TestFlowMovesOnlyOnceTheDestinationHoldsIt(t *testing.T) {
	u := newUnitEcho(t, 1500*time.Millisecond)
	src := pair(t, wire.RouteAny, client.DestinationConfig{Addr: u.addr, StartUnit: "echo.service", Units: u},
		client.SourceConfig{Addr: "127.0.0.1:0"})
	waitRelayUp(t, src, "svc")
	src.DropDirectPaths(300 * time.Millisecond)
	waitPath(t, src, "svc", "relay")
	c := dialHeld(t, sourceStatus(t, src, "svc").Addr)
	echoOn(t, c, "first, while the unit starts")
	waitMoves(t, src, "relay→direct", 1)
	echoOn(t, c, "after the move")
}

// The first path of a flow dies while its destination still dials a slow
// service: the source's Resume over the relay waits at the destination
// for the flow to be registered rather than being refused, and the flow
// goes on over the relay.
func TestResumeWaitsForAFlowBeingDialed(t *testing.T) {
	u := newUnitEcho(t, 1500*time.Millisecond)
	src := pair(t, wire.RouteAny, client.DestinationConfig{Addr: u.addr, StartUnit: "echo.service", Units: u},
		client.SourceConfig{Addr: "127.0.0.1:0"})
	waitRelayUp(t, src, "svc")
	c := dialHeld(t, sourceStatus(t, src, "svc").Addr)
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the destination starting its unit", 5*time.Second, func() bool { return u.starts.Load() >= 1 })
	src.DropDirectPaths(time.Minute)
	got := make([]byte, len("first"))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "first" {
		t.Fatalf("echo of the first bytes: %q, %v", got, err)
	}
	waitMoves(t, src, "direct→relay", 1)
	echoOn(t, c, "over the relay")
}

// The peer's acknowledgement of our FIN may come while the last bytes it
// sent with its own FIN are on their way to our TCP side: the flow closes
// its TCP connection only after them (it used to close it first, and a
// reply that came with its FIN was lost).
func TestFlowClosesOnlyAfterItsLastBytes(t *testing.T) {
	t.Cleanup(client.AckInLastWrite()) // after the clients' own cleanup
	_, _, addr := echoPair(t, nil)
	for i := range 20 {
		msg := fmt.Sprintf("the last bytes, %d", i)
		c := dialHeld(t, addr)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != msg {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
	}
}
