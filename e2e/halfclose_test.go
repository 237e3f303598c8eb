package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// How the end of a TCP connection crosses the tunnel, both ways and on
// both routes: a FIN (half-close) becomes a FIN on the other side and the
// other direction goes on; a reset (RST) becomes a reset, not an orderly
// close, so that neither end takes a failure for a complete reply.

// halfCloseTopology is a source and a destination with one endpoint per
// route.
func halfCloseTopology(t *testing.T) *topology {
	return newTopology(t,
		endpoint{name: "d", srcRoute: "direct", dstRoute: "direct"},
		endpoint{name: "r", srcRoute: "relay", dstRoute: "relay"},
	)
}

// startService runs the destination's local service in the test, on
// echoPort in place of echod, handling each connection with handle.
func (tp *topology) startService(t *testing.T, handle func(*net.TCPConn)) {
	t.Helper()
	ln, err := net.Listen("tcp", addr(tp.echoPort))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				handle(c.(*net.TCPConn))
			})
		}
	})
}

func TestHalfCloseCarriesAcrossBothRoutes(t *testing.T) {
	tp := halfCloseTopology(t)
	tp.start(t)
	for _, name := range []string{"d", "r"} {
		c, err := net.DialTimeout("tcp", tp.srcAddr(name), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write([]byte("request")); err != nil {
			t.Fatal(err)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		// echod echoes, sees our FIN, and only then sends its own FIN: the
		// reply arriving in full proves both half-closes crossed.
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "request" {
			t.Fatalf("%s: read %q, %v; want \"request\" then EOF", name, got, err)
		}
	}
}

// The service half-closes first (it sends everything it has, then FIN)
// and then reads what the user still sends: the user sees EOF after the
// service's bytes, and what it writes afterwards, and its own FIN, still
// reach the service.
func TestServiceHalfCloseFirstCarriesAcrossBothRoutes(t *testing.T) {
	tp := halfCloseTopology(t)
	heard := make(chan string, 4)
	tp.startService(t, func(c *net.TCPConn) {
		if _, err := c.Write([]byte("greeting")); err != nil {
			heard <- fmt.Sprintf("write: %v", err)
			return
		}
		if err := c.CloseWrite(); err != nil {
			heard <- fmt.Sprintf("close write: %v", err)
			return
		}
		got, err := io.ReadAll(c) // up to the user's FIN
		if err != nil {
			heard <- fmt.Sprintf("read %q: %v", got, err)
			return
		}
		heard <- string(got)
	})
	tp.startDaemons(t)
	for _, name := range []string{"d", "r"} {
		c, err := net.DialTimeout("tcp", tp.srcAddr(name), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		got, err := io.ReadAll(c) // the service sends first: nothing to write yet
		if err != nil || string(got) != "greeting" {
			c.Close()
			t.Fatalf("%s: read %q, %v; want \"greeting\" then EOF", name, got, err)
		}
		if _, err := c.Write([]byte("after your FIN")); err != nil {
			c.Close()
			t.Fatalf("%s: writing after the service's half-close: %v", name, err)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			c.Close()
			t.Fatal(err)
		}
		select {
		case got := <-heard:
			if got != "after your FIN" {
				t.Fatalf("%s: the service read %q; want \"after your FIN\" then EOF", name, got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the service never saw the user's bytes and FIN after its own half-close", name)
		}
		c.Close()
	}
}

// isReset reports whether err is a TCP reset, as opposed to an orderly
// close (io.EOF) or a timeout.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// A reset by either end reaches the other end as a reset. The user's
// first byte says who resets: 's', the service, once it read it; 'u', the
// user, once the service read it.
func TestResetCarriesAcrossBothRoutes(t *testing.T) {
	tp := halfCloseTopology(t)
	ready := make(chan struct{}, 4)
	heard := make(chan error, 4)
	tp.startService(t, func(c *net.TCPConn) {
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			heard <- fmt.Errorf("read the first byte: %w", err)
			return
		}
		switch b[0] {
		case 's':
			_ = c.SetLinger(0) // close sends RST
			_ = c.Close()
		case 'u':
			ready <- struct{}{}
			_, err := c.Read(b)
			heard <- err
		}
	})
	tp.startDaemons(t)
	for _, name := range []string{"d", "r"} {
		t.Run(name+"/service resets", func(t *testing.T) {
			c, err := net.DialTimeout("tcp", tp.srcAddr(name), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("s")); err != nil {
				t.Fatal(err)
			}
			n, err := c.Read(make([]byte, 1))
			if n != 0 || !isReset(err) {
				t.Fatalf("user read %d bytes, %v; want the connection reset", n, err)
			}
		})
		t.Run(name+"/user resets", func(t *testing.T) {
			c, err := net.DialTimeout("tcp", tp.srcAddr(name), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("u")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ready:
			case err := <-heard:
				t.Fatalf("service: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("the user's first byte never reached the service")
			}
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close() // sends RST
			select {
			case err := <-heard:
				if !isReset(err) {
					t.Fatalf("service read %v; want the connection reset", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the service never saw the user's reset")
			}
		})
	}
}
