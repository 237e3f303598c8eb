package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// echoRoundTrip sends payload through addr, half-closes, and returns what
// came back before the far side's FIN.
func echoRoundTrip(addr string, payload []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, rerr := io.ReadAll(c)
	if werr := <-errc; werr != nil {
		return got, werr
	}
	return got, rerr
}

func relayBytes(t *testing.T, tp *topology) int64 {
	t.Helper()
	var st struct {
		Relay struct {
			Endpoints []struct {
				Name  string `json:"name"`
				Bytes int64  `json:"bytes"`
			} `json:"endpoints"`
		} `json:"relay"`
	}
	if err := getJSON(addr(tp.serverStatus), &st); err != nil {
		t.Fatalf("server status: %v", err)
	}
	var n int64
	for _, ep := range st.Relay.Endpoints {
		n += ep.Bytes
	}
	return n
}

func TestBytesArriveIntactOverDirectAndRelayRoutes(t *testing.T) {
	tp := newTopology(t,
		endpoint{name: "viaDirect", srcRoute: "direct", dstRoute: "any"},
		endpoint{name: "viaRelay", srcRoute: "any", dstRoute: "relay"},
	)
	tp.start(t)
	payload := make([]byte, 8<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(payload)
	for _, name := range []string{"viaDirect", "viaRelay"} {
		before := relayBytes(t, tp)
		got, err := echoRoundTrip(tp.srcAddr(name), payload)
		if err != nil {
			t.Fatalf("%s: %v (got %d bytes)", name, err, len(got))
		}
		if sha256.Sum256(got) != want {
			t.Fatalf("%s: echoed %d bytes with a different sha256", name, len(got))
		}
		relayed := relayBytes(t, tp) - before
		switch name {
		case "viaDirect":
			// The other endpoint's relayed connection exchanges a few
			// handshake and keep-alive packets meanwhile; the payload is 8 MiB.
			if relayed > int64(len(payload))/100 {
				t.Errorf("direct route: relay forwarded %d bytes, want almost none", relayed)
			}
		case "viaRelay":
			if relayed < 2*int64(len(payload)) {
				t.Errorf("relay route: relay forwarded %d bytes, want at least %d", relayed, 2*len(payload))
			}
		}
	}
}

func TestThousandConcurrentConnections(t *testing.T) {
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.start(t)
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := bytes.Repeat([]byte{byte(i)}, 1024)
			got, err := echoRoundTrip(tp.srcAddr("svc"), payload)
			if err == nil && !bytes.Equal(got, payload) {
				err = errors.New("echo mismatch")
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n == 0 {
			t.Errorf("connection failed: %v", err)
		}
		n++
	}
	if n > 0 {
		t.Fatalf("%d of 1000 connections failed", n)
	}
}

func TestTenThousandConnectionsHeldOpenAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("holds 10,000 connections; skipped in -short mode")
	}
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "direct", dstRoute: "any"})
	tp.start(t)
	const n = 10000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// One connection at a time and no goroutine per connection: the test
	// binary runs under the race detector, which caps goroutines.
	buf := make([]byte, 8)
	for i := range n {
		c, err := net.DialTimeout("tcp", tp.srcAddr("svc"), 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := []byte{'h', 'i', byte(i), byte(i >> 8)}
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("connection %d write: %v", i, err)
		}
		if _, err := io.ReadFull(c, buf[:4]); err != nil || !bytes.Equal(buf[:4], msg) {
			t.Fatalf("connection %d echo: %q, %v", i, buf[:4], err)
		}
	}
	// All still open: each answers again.
	for i, c := range conns {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("ok")); err != nil {
			t.Fatalf("connection %d second write: %v", i, err)
		}
		if _, err := io.ReadFull(c, buf[:2]); err != nil || string(buf[:2]) != "ok" {
			t.Fatalf("connection %d second echo: %q, %v", i, buf[:2], err)
		}
	}
	var st struct {
		Sources []struct {
			BytesOut int64 `json:"bytes_out"`
		} `json:"sources"`
	}
	if err := getJSON(addr(tp.srcStatus), &st); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st)
	if len(st.Sources) != 1 || st.Sources[0].BytesOut < n*6 {
		t.Fatalf("source status %s: want bytes_out >= %d", b, n*6)
	}
}
