package client_test

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connetd/connetd/client"
)

// taggedServer answers each connection with its one-byte tag and then
// echoes; it counts the connections it took and those open now.
type taggedServer struct {
	addr          string
	total, active atomic.Int64
}

func newTaggedServer(t *testing.T, tag byte) *taggedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &taggedServer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.total.Add(1)
			s.active.Add(1)
			wg.Go(func() {
				defer s.active.Add(-1)
				defer c.Close()
				if _, err := c.Write([]byte{tag}); err == nil {
					_, _ = io.Copy(c, c)
				}
			})
		}
	})
	return s
}

// dialTagged connects through a source and returns the connection and the
// tag of the destination service it reached.
func dialTagged(addr string) (net.Conn, byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		c.Close()
		return nil, 0, err
	}
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return nil, 0, err
	}
	if b[1] != 'x' {
		c.Close()
		return nil, 0, fmt.Errorf("echo %q", b[1])
	}
	_ = c.SetDeadline(time.Time{})
	return c, b[0], nil
}

// waitPeers waits until the source has a path to n destinations.
func waitPeers(t *testing.T, c *client.Client, source string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.Status().Sources {
			up := 0
			for _, p := range s.Peers {
				if p.Path != "none" {
					up++
				}
			}
			if s.Name == source && up >= n {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("source %s never reached %d destinations: %+v", source, n, c.Status().Sources)
}

// lbLab starts three destination clients of name "svc", tagged A, B and C
// (C's service refuses when dead), and a source client with the given
// sources (name → LB); it waits until every source reaches all three.
func lbLab(t *testing.T, dead bool, sources map[string]client.LBConfig) (map[byte]*taggedServer, map[string]string, *client.Client) {
	t.Helper()
	l := newLab(t)
	servers := map[byte]*taggedServer{}
	for _, tag := range []byte("ABC") {
		addr := ""
		if tag == 'C' && dead {
			addr = freeTCP(t) // nothing listens: the destination's dial is refused
		} else {
			servers[tag] = newTaggedServer(t, tag)
			addr = servers[tag].addr
		}
		l.client("dst"+string(tag), client.Config{}, func(c *client.Client) {
			for name := range sources {
				must(t, c.AddDestination(name, client.DestinationConfig{Addr: addr}))
			}
		})
	}
	addrs := map[string]string{}
	src := l.client("src", client.Config{}, func(c *client.Client) {
		for name, lb := range sources {
			addrs[name] = freeTCP(t)
			must(t, c.AddSource(name, client.SourceConfig{Addr: addrs[name], LB: lb}))
		}
	})
	for name := range sources {
		waitPeers(t, src, name, 3)
	}
	return servers, addrs, src
}

func TestLBRoundRobinSpreadsConnections(t *testing.T) {
	servers, addrs, _ := lbLab(t, false, map[string]client.LBConfig{"svc": {Policy: client.LBRoundRobin}})
	counts := map[byte]int{}
	for i := range 300 {
		c, tag, err := dialTagged(addrs["svc"])
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		c.Close()
		counts[tag]++
	}
	t.Logf("round-robin spread of 300 connections: A=%d B=%d C=%d", counts['A'], counts['B'], counts['C'])
	for tag, s := range servers {
		if n := counts[tag]; n < 90 || n > 110 {
			t.Errorf("destination %c took %d connections, want 100±10 (%v)", tag, n, counts)
		}
		if n := s.total.Load(); n != int64(counts[tag]) {
			t.Errorf("destination %c's service counted %d connections, the clients %d", tag, n, counts[tag])
		}
	}
}

func TestLBLeastConnsKeepsSpreadEven(t *testing.T) {
	servers, addrs, src := lbLab(t, false, map[string]client.LBConfig{"svc": {Policy: client.LBLeastConns}})
	held := map[byte][]net.Conn{}
	t.Cleanup(func() {
		for _, cs := range held {
			for _, c := range cs {
				c.Close()
			}
		}
	})
	// open holds n more connections; each must go to a destination
	// holding the fewest.
	open := func(n int) {
		t.Helper()
		for i := range n {
			fewest := min(len(held['A']), len(held['B']), len(held['C']))
			c, tag, err := dialTagged(addrs["svc"])
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			if len(held[tag]) != fewest {
				t.Fatalf("connection %d went to %c holding %d; A=%d B=%d C=%d", i, tag, len(held[tag]),
					len(held['A']), len(held['B']), len(held['C']))
			}
			held[tag] = append(held[tag], c)
		}
	}
	spread := func() int {
		return max(len(held['A']), len(held['B']), len(held['C'])) - min(len(held['A']), len(held['B']), len(held['C']))
	}
	open(30)
	if spread() > 1 {
		t.Errorf("30 connections held: A=%d B=%d C=%d, want a spread within 1", len(held['A']), len(held['B']), len(held['C']))
	}
	// A's connections end: the next ones go to A until it catches up.
	for _, c := range held['A'][:6] {
		c.Close()
	}
	held['A'] = held['A'][6:]
	waitActive(t, src, "svc", 24)
	open(12)
	t.Logf("least-conns held: A=%d B=%d C=%d (services: A=%d B=%d C=%d open)", len(held['A']), len(held['B']), len(held['C']),
		servers['A'].active.Load(), servers['B'].active.Load(), servers['C'].active.Load())
	for _, tag := range []byte("ABC") {
		if len(held[tag]) != 12 {
			t.Errorf("destination %c holds %d connections, want 12", tag, len(held[tag]))
		}
	}
	// Status shows each destination's share.
	for _, s := range src.Status().Sources {
		for _, p := range s.Peers {
			if p.Active != 12 {
				t.Errorf("status: peer %s has %d active connections, want 12", p.ID[:8], p.Active)
			}
		}
	}
}

// waitActive waits until the source's destinations hold n connections in
// all, as its status says.
func waitActive(t *testing.T, c *client.Client, source string, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.Status().Sources {
			var sum int64
			for _, p := range s.Peers {
				sum += p.Active
			}
			if s.Name == source && sum == n {
				time.Sleep(50 * time.Millisecond) // the balancer's count follows the proxy's end
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("source %s never held %d connections: %+v", source, n, c.Status().Sources)
}

func TestLBRetrySkipsRefusingDestination(t *testing.T) {
	_, addrs, _ := lbLab(t, true, map[string]client.LBConfig{
		"retry": {Policy: client.LBRoundRobin, Retry: client.LBRetryAll},
		"never": {Policy: client.LBRoundRobin},
		// the dead destination never holds a connection: always tried first
		"count": {Policy: client.LBLeastConns, Retry: client.LBRetryCount, RetryMax: 3},
		"timed": {Policy: client.LBRandom, Retry: client.LBRetryTimed, RetryMax: 5000},
		// no policy: every connection to every destination, default order
		"plain": {Retry: client.LBRetryAll},
	})
	const n = 60
	failed := func(name string) (int, map[byte]int) {
		fails, counts := 0, map[byte]int{}
		for range n {
			c, tag, err := dialTagged(addrs[name])
			if err != nil {
				fails++
				continue
			}
			c.Close()
			counts[tag]++
		}
		return fails, counts
	}
	for _, name := range []string{"retry", "count", "timed", "plain"} {
		fails, counts := failed(name)
		t.Logf("%s: %d of %d failed, A=%d B=%d", name, fails, n, counts['A'], counts['B'])
		if fails != 0 {
			t.Errorf("%s: %d of %d connections failed", name, fails, n)
		}
		if name != "plain" && (counts['A'] == 0 || counts['B'] == 0) {
			t.Errorf("%s: the live destinations did not share the connections: %v", name, counts)
		}
	}
	fails, _ := failed("never")
	t.Logf("no lb-retry: %d of %d failed", fails, n)
	if fails < n/3-2 || fails > n/3+2 {
		t.Errorf("without retry, %d of %d connections failed, want about a third (the dead destination's turn)", fails, n)
	}
}

func TestLBRejectsBadConfig(t *testing.T) {
	c, err := client.New(client.Config{Token: "tok", ServerAddr: "127.0.0.1:1", DirectConn: udp(t), RelayConn: udp(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, lb := range []client.LBConfig{{Policy: "fastest"}, {Retry: "sometimes"}, {Retry: client.LBRetryCount}, {Retry: client.LBRetryTimed, RetryMax: -1}} {
		if err := c.AddSource("x", client.SourceConfig{Addr: "127.0.0.1:0", LB: lb}); err == nil {
			t.Errorf("%+v accepted", lb)
			_ = c.RemoveSource("x")
		}
	}
	if err := c.AddSource("u", client.SourceConfig{Addr: "127.0.0.1:0", Proto: "udp", LB: client.LBConfig{Policy: client.LBRandom}}); err == nil {
		t.Error("a udp source took a load-balancing policy")
	}
}
