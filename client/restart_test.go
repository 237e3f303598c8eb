package client_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/udptest"
	"github.com/connetd/connetd/wire"
)

// restartable is a client run the way systemd restarts connetd: the same
// identity, reset key and UDP sockets (the store and the file descriptor
// store), a new Client each time.
type restartable struct {
	l              *lab
	name           string
	cfg            client.Config
	setup          func(*client.Client)
	cancel         context.CancelFunc
	done           chan struct{}
	direct, relays *net.UDPConn
}

func (l *lab) restartable(name string, setup func(*client.Client)) *restartable {
	l.t.Helper()
	id, err := identity.New("connetd-client")
	if err != nil {
		l.t.Fatal(err)
	}
	key := new(quic.StatelessResetKey)
	copy(key[:], "a reset key kept in the store...")
	r := &restartable{l: l, name: name, setup: setup, direct: udp(l.t), relays: udp(l.t)}
	r.cfg = client.Config{
		Token: "tok", ServerAddr: l.ctrlAddr, ServerTLS: &tls.Config{RootCAs: l.roots, ServerName: "127.0.0.1"},
		Identity: id, DirectStatelessResetKey: key, DirectConn: r.direct, RelayConn: r.relays,
		Logger: slog.New(slog.NewTextHandler(l.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("role", name),
	}
	r.start()
	l.t.Cleanup(r.stop)
	return r
}

func (r *restartable) start() {
	r.l.t.Helper()
	c, err := client.New(r.cfg)
	if err != nil {
		r.l.t.Fatal(err)
	}
	r.setup(c)
	ctx, cancel := context.WithCancel(r.l.ctx)
	r.cancel, r.done = cancel, make(chan struct{})
	go func() { defer close(r.done); _ = c.Run(ctx) }()
}

func (r *restartable) stop() {
	r.cancel()
	<-r.done
}

func TestRestartedDestinationIsDirectAgainWithinASecondWithoutAPunch(t *testing.T) {
	l := newLab(t)
	svc := echoServer(t)
	dst := l.restartable("dst", func(c *client.Client) {
		must(t, c.AddDestination("svc", client.DestinationConfig{Addr: svc}))
	})
	addr := freeTCP(t)
	src := l.client("src", client.Config{}, func(c *client.Client) {
		// Direct only: a connection that succeeds went over the direct path.
		must(t, c.AddSource("svc", client.SourceConfig{Addr: addr, Route: wire.RouteDirect}))
	})
	waitPath(t, src, "svc", "direct")
	echo(t, addr, "before the restart")
	punches := src.Status().Sources[0].Peers[0].PunchAttempts
	if punches < 1 {
		t.Fatalf("punch attempts %d before the restart, want the first punch counted", punches)
	}

	for round := range 3 {
		dst.stop()
		restarted := time.Now()
		dst.start()
		// A connection the source routes before it has seen the old
		// process close the path is lost with it: try again.
		failed := 0
		for !tryEcho(addr, "after the restart") {
			failed++
			if time.Since(restarted) > 5*time.Second {
				t.Fatalf("round %d: no connection through the source within 5s of the restart", round)
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(restarted)
		t.Logf("round %d: restart to a new connection over the direct path: %s (%d attempts failed)", round, took, failed)
		if took > time.Second {
			t.Errorf("round %d: a new connection %s after the restart, want within 1s", round, took)
		}
		p := src.Status().Sources[0].Peers[0]
		if p.Path != "direct" || p.PunchAttempts != punches {
			t.Errorf("round %d: peer path %q, punch attempts %d → %d: want direct without a new punch", round, p.Path, punches, p.PunchAttempts)
		}
	}
	if n := strings.Count(l.logs.String(), "direct path back at its last address, without punching"); n < 3 {
		t.Errorf("%d re-dials logged, want one per restart", n)
	}
}

// tryEcho is echo that reports failure instead of failing the test.
func tryEcho(addr, msg string) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return false
	}
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	return err == nil && string(got) == msg
}

// A UDP flow through the source goes on after the destination restarts:
// the source's next datagram opens the flow again on the new connection.
func TestUDPFlowResumesAfterTheDestinationRestarts(t *testing.T) {
	l := newLab(t)
	echo := udptest.ListenEcho(t, "127.0.0.1:0")
	dst := l.restartable("dst", func(c *client.Client) {
		must(t, c.AddDestination("dns", client.DestinationConfig{Addr: echo.Addr(), Proto: wire.ProtoUDP}))
	})
	src := l.client("src", client.Config{}, func(c *client.Client) {
		must(t, c.AddSource("dns", client.SourceConfig{Addr: "127.0.0.1:0", Route: wire.RouteDirect, Proto: wire.ProtoUDP}))
	})
	waitPath(t, src, "dns", "direct")
	c := udptest.Dial(t, sourceStatus(t, src, "dns").Addr)
	must(t, udptest.Exchange(c, 20, 500, 1, "before"))
	dst.stop()
	restarted := time.Now()
	dst.start()
	// Datagrams sent before the source has a path again are lost (UDP):
	// keep sending, on the same socket (the same flow), until one comes
	// back.
	buf := make([]byte, 100)
	for i := 0; ; i++ {
		if time.Since(restarted) > 5*time.Second {
			t.Fatalf("the flow did not resume within 5s of the restart")
		}
		msg := fmt.Sprintf("after %d", i)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == msg {
			break
		}
	}
	t.Logf("the UDP flow resumed %s after the restart", time.Since(restarted))
	must(t, udptest.Exchange(c, 20, 500, 1, "resumed"))
}
