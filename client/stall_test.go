package client_test

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connetd/connetd/client"
)

// udpProxy forwards one client's datagrams to a server and back, until
// frozen: then it drops everything, as a path that stopped working does.
type udpProxy struct {
	front, back *net.UDPConn
	frozen      atomic.Bool
	wg          sync.WaitGroup
}

func newUDPProxy(t *testing.T, server string) *udpProxy {
	t.Helper()
	srv, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{front: udp(t), back: udp(t)}
	var client atomic.Pointer[net.UDPAddr]
	p.wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := p.front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			client.Store(from)
			if !p.frozen.Load() {
				_, _ = p.back.WriteToUDP(buf[:n], srv)
			}
		}
	})
	p.wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, err := p.back.Read(buf)
			if err != nil {
				return
			}
			if to := client.Load(); to != nil && !p.frozen.Load() {
				_, _ = p.front.WriteToUDP(buf[:n], to)
			}
		}
	})
	t.Cleanup(func() { p.front.Close(); p.back.Close(); p.wg.Wait() })
	return p
}

// A control stream that stops moving (the server stops reading, the path
// dies) must not stop anything else: messages for control are queued, and
// no lock is held while writing to the network. Before the control writer
// was queued, endpoint changes wrote under the client's lock and, once the
// stream's window was full, froze forwarding and status with it.
func TestStalledControlStreamStopsNeitherForwardingNorStatus(t *testing.T) {
	l := newLab(t)
	svc := echoServer(t)
	l.client("dst", client.Config{}, func(c *client.Client) {
		must(t, c.AddDestination("svc", client.DestinationConfig{Addr: svc, Route: "relay"}))
	})
	proxy := newUDPProxy(t, l.ctrlAddr)
	addr := freeTCP(t)
	src := l.client("src", client.Config{ServerAddr: proxy.front.LocalAddr().String()}, func(c *client.Client) {
		must(t, c.AddSource("svc", client.SourceConfig{Addr: addr}))
	})
	waitPath(t, src, "svc", "relay")
	echo(t, addr, "before the stall")

	proxy.frozen.Store(true)
	// Far more than a control stream's flow-control and congestion
	// windows hold: with writes under the lock, one of these would block.
	start := time.Now()
	for i := range 2000 {
		name := fmt.Sprintf("churn-%04d-%s", i, "padding-to-make-every-announce-longer-than-a-short-name")
		must(t, src.AddSource(name, client.SourceConfig{Addr: "127.0.0.1:0"}))
		must(t, src.RemoveSource(name))
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("4000 endpoint changes with control stalled took %v", took)
	}
	statusDone := make(chan client.Status, 1)
	go func() { statusDone <- src.Status() }()
	select {
	case st := <-statusDone:
		if len(st.Sources) != 1 {
			t.Fatalf("status lists %d sources, want 1", len(st.Sources))
		}
	case <-time.After(2 * time.Second):
		t.Fatal("status did not answer while control was stalled")
	}
	echo(t, addr, "while control is stalled")
}
