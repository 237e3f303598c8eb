package client_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/connetd/connetd/client"
)

func TestSourceReachesDestinationDirectlyAndThroughRelay(t *testing.T) {
	l := newLab(t)
	svc := echoServer(t)
	l.client("dst", client.Config{}, func(c *client.Client) {
		must(t, c.AddDestination("d", client.DestinationConfig{Addr: svc, Route: "direct"}))
		must(t, c.AddDestination("r", client.DestinationConfig{Addr: svc, Route: "relay"}))
	})
	dAddr, rAddr := freeTCP(t), freeTCP(t)
	src := l.client("src", client.Config{}, func(c *client.Client) {
		must(t, c.AddSource("d", client.SourceConfig{Addr: dAddr}))
		must(t, c.AddSource("r", client.SourceConfig{Addr: rAddr}))
	})
	waitPath(t, src, "d", "direct")
	waitPath(t, src, "r", "relay")
	echo(t, dAddr, "over the direct path")
	echo(t, rAddr, "through the relay")
}

func TestEndpointsAddedAndRemovedWhileRunning(t *testing.T) {
	l := newLab(t)
	svc := echoServer(t)
	dst := l.client("dst", client.Config{}, func(*client.Client) {})
	src := l.client("src", client.Config{}, func(*client.Client) {})
	addr := freeTCP(t)
	must(t, dst.AddDestination("late", client.DestinationConfig{Addr: svc}))
	must(t, src.AddSource("late", client.SourceConfig{Addr: addr}))
	waitPath(t, src, "late", "direct")
	echo(t, addr, "added at run time")

	if err := src.AddSource("late", client.SourceConfig{Addr: freeTCP(t)}); !errors.Is(err, client.ErrExists) {
		t.Fatalf("adding a duplicate source: %v, want ErrExists", err)
	}
	must(t, src.RemoveSource("late"))
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("removed source still accepts connections")
	}
	if err := src.RemoveSource("late"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("removing a missing source: %v, want ErrNotFound", err)
	}
}

func TestConnectionRefusedWhenPeerStreamLimitIsReached(t *testing.T) {
	l := newLab(t)
	svc := echoServer(t)
	l.client("dst", client.Config{MaxStreams: 3}, func(c *client.Client) {
		must(t, c.AddDestination("svc", client.DestinationConfig{Addr: svc}))
	})
	addr := freeTCP(t)
	src := l.client("src", client.Config{}, func(c *client.Client) {
		must(t, c.AddSource("svc", client.SourceConfig{Addr: addr}))
	})
	waitPath(t, src, "svc", "direct")
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatalf("connection within the limit: %v", err)
		}
	}
	over, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	_ = over.SetDeadline(time.Now().Add(3 * time.Second))
	if n, err := over.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Fatalf("connection over the limit: read %d, %v; want it closed", n, err)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection over the limit was left hanging")
	}
	l.logs.WaitFor(t, "refusing connection: peer stream limit reached", 2*time.Second)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
