package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/wire"
)

// unitEcho stands in for systemd and a unit: StartUnit returns at once, as
// systemd's job for a Type=simple service does, and the service (a real
// echo listener on addr) starts listening only after delay; StopUnit closes
// it and its connections.
type unitEcho struct {
	t      *testing.T
	addr   string
	delay  time.Duration
	fail   error // StartUnit's answer, when set
	starts atomic.Int32
	stops  atomic.Int32

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	closed bool // the test ended: a start still sleeping listens no more
	wg     sync.WaitGroup
}

func newUnitEcho(t *testing.T, delay time.Duration) *unitEcho {
	u := &unitEcho{t: t, addr: freeTCP(t), delay: delay, conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		u.mu.Lock()
		u.closed = true
		u.mu.Unlock()
		u.down()
		u.wg.Wait()
	})
	return u
}

func (u *unitEcho) StartUnit(ctx context.Context, name string) error {
	u.starts.Add(1)
	if name != "echo.service" {
		return fmt.Errorf("unit %q", name)
	}
	if u.fail != nil {
		return u.fail
	}
	u.wg.Go(func() {
		time.Sleep(u.delay)
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.ln != nil || u.closed {
			return
		}
		ln, err := net.Listen("tcp", u.addr)
		if err != nil {
			u.t.Errorf("unit listen: %v", err)
			return
		}
		u.ln = ln
		u.wg.Go(func() { u.serve(ln) })
	})
	return nil
}

func (u *unitEcho) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns[c] = true
		u.mu.Unlock()
		u.wg.Go(func() {
			_, _ = io.Copy(c, c)
			_ = c.Close()
		})
	}
}

func (u *unitEcho) StopUnit(ctx context.Context, name string) error {
	u.stops.Add(1)
	u.down()
	return nil
}

func (u *unitEcho) down() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ln != nil {
		_ = u.ln.Close()
		u.ln = nil
	}
	for c := range u.conns {
		_ = c.Close()
	}
	clear(u.conns)
}

func (u *unitEcho) running() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ln != nil
}

// echoErr is echo for goroutines.
func echoErr(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("echo %q: %w", msg, err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q: got %q", msg, got)
	}
	return nil
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Connections that find an on-demand destination's service down start its
// unit once between them, wait until it accepts and are served; after
// stop-idle without connections the unit is stopped, and the next
// connection starts it again.
func TestStartUnitOnDemand(t *testing.T) {
	u := newUnitEcho(t, 300*time.Millisecond)
	srcAddr := freeTCP(t)
	pair(t, wire.RouteDirect,
		client.DestinationConfig{Addr: u.addr, StartUnit: "echo.service", StopIdle: 500 * time.Millisecond, Units: u},
		client.SourceConfig{Addr: srcAddr})
	if u.running() {
		t.Fatal("the unit runs before any connection")
	}

	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- echoErr(srcAddr, fmt.Sprintf("hello %d", i)) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := u.starts.Load(); got != 1 {
		t.Fatalf("%d concurrent connections started the unit %d times, want 1", n, got)
	}

	// A connection held open keeps the unit up past stop-idle.
	c, err := net.Dial("tcp", srcAddr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if u.stops.Load() != 0 || !u.running() {
		t.Fatal("the unit was stopped while a connection was open")
	}
	_ = c.Close()

	waitFor(t, "the idle unit was not stopped", 5*time.Second, func() bool { return u.stops.Load() == 1 && !u.running() })

	if err := echoErr(srcAddr, "again"); err != nil {
		t.Fatal(err)
	}
	if got := u.starts.Load(); got != 2 {
		t.Fatalf("the connection after the stop: %d starts, want 2", got)
	}
}

// A unit that cannot be started fails the connection, and the next one
// tries again; without stop-idle nothing is ever stopped.
func TestStartUnitFails(t *testing.T) {
	u := newUnitEcho(t, 0)
	u.fail = errors.New("access denied")
	srcAddr := freeTCP(t)
	pair(t, wire.RouteDirect,
		client.DestinationConfig{Addr: u.addr, StartUnit: "echo.service", Units: u},
		client.SourceConfig{Addr: srcAddr})
	if err := echoErr(srcAddr, "refused"); err == nil {
		t.Fatal("a connection was served by a unit that did not start")
	}
	if err := echoErr(srcAddr, "refused again"); err == nil {
		t.Fatal("a connection was served by a unit that did not start")
	}
	if got := u.starts.Load(); got != 2 {
		t.Fatalf("two failed connections: %d starts, want 2", got)
	}
	if u.stops.Load() != 0 {
		t.Fatal("a unit without stop-idle was stopped")
	}
}

// start-unit needs Units, and applies only to destinations that dial.
func TestStartUnitConfig(t *testing.T) {
	u := newUnitEcho(t, 0)
	l := newLab(t)
	c := l.client("dst", client.Config{}, func(*client.Client) {})
	for name, cfg := range map[string]client.DestinationConfig{
		"no units":  {Addr: u.addr, StartUnit: "echo.service"},
		"udp":       {Addr: u.addr, StartUnit: "echo.service", Units: u, Proto: wire.ProtoUDP},
		"file":      {Addr: u.addr, StartUnit: "echo.service", Units: u, Kind: client.Kind{Scheme: "file", Path: t.TempDir()}},
		"idle only": {Addr: u.addr, StopIdle: time.Second},
	} {
		if err := c.AddDestination(name, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
