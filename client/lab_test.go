package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/syncbuf"
	"github.com/connetd/connetd/internal/testcert"
	"github.com/connetd/connetd/internal/testport"
	"github.com/connetd/connetd/relay"
)

// lab runs a control server, a relay and clients in this process, on
// loopback, so the race detector sees all of their goroutines.
type lab struct {
	t        *testing.T
	ctx      context.Context
	wg       sync.WaitGroup
	ctrlAddr string
	roots    *x509.CertPool
	logs     *syncbuf.Buffer
	// the relay's address and identity, for tests that play a client
	relayAddr netip.AddrPort
	relayID   identity.ID
}

func udp(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadBuffer(4 << 20) // as the daemon tunes its QUIC sockets
	_ = c.SetWriteBuffer(4 << 20)
	return c
}

func serverCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	c, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	return c.TLS, c.Pool
}

func newLab(t *testing.T) *lab {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &lab{t: t, ctx: ctx, logs: &syncbuf.Buffer{}}
	t.Cleanup(func() {
		cancel()
		l.wg.Wait()
		if t.Failed() || os.Getenv("LABLOGS") != "" {
			t.Logf("logs:\n%s", l.logs.String())
		}
	})
	cert, pool := serverCert(t)
	l.roots = pool
	log := slog.New(slog.NewTextHandler(l.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctrl := control.New(control.Config{Cert: cert, Auth: control.Auth{ClientTokens: []string{"tok"}}, Logger: log.With("role", "control")})
	cu := udp(t)
	l.ctrlAddr = cu.LocalAddr().String()
	ctr := &quic.Transport{Conn: cu}
	relayID, err := identity.New("relay")
	if err != nil {
		t.Fatal(err)
	}
	ru := udp(t)
	l.relayAddr, l.relayID = ru.LocalAddr().(*net.UDPAddr).AddrPort(), relayID.ID
	rel := relay.New(relay.Config{Identity: relayID, Conn: ru, Logger: log.With("role", "relay")})
	l.wg.Add(3)
	go func() { defer l.wg.Done(); _ = ctrl.ServeClients(ctx, ctr); _ = ctr.Close() }()
	go func() { defer l.wg.Done(); _ = rel.Run(ctx); _ = rel.Close() }()
	go func() {
		defer l.wg.Done()
		var links sync.WaitGroup
		rel.RunControl(ctx, func(ctx context.Context) (io.ReadWriteCloser, error) {
			a, b := net.Pipe()
			links.Add(1)
			go func() {
				defer links.Done()
				_ = ctrl.AttachRelay(ctx, b, relayID.DER, ru.LocalAddr().String())
				b.Close()
			}()
			return a, nil
		})
		links.Wait()
	}()
	return l
}

// client starts a client; setup adds its endpoints before it runs.
func (l *lab) client(name string, cfg client.Config, setup func(*client.Client)) *client.Client {
	l.t.Helper()
	cfg.Token = "tok"
	if cfg.ServerAddr == "" {
		cfg.ServerAddr = l.ctrlAddr
	}
	cfg.ServerTLS = &tls.Config{RootCAs: l.roots, ServerName: "127.0.0.1"}
	cfg.DirectConn, cfg.RelayConn = udp(l.t), udp(l.t)
	cfg.Logger = slog.New(slog.NewTextHandler(l.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("role", name)
	c, err := client.New(cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	setup(c)
	l.wg.Add(1)
	go func() { defer l.wg.Done(); _ = c.Run(l.ctx) }()
	return c
}

// echoServer echoes on a loopback port until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func freeTCP(t *testing.T) string { return testport.Addr(t) }

func waitPath(t *testing.T, c *client.Client, source, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.Status().Sources {
			if s.Name == source && len(s.Peers) > 0 && s.Peers[0].Path == path {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("source %s never used path %s: %+v", source, path, c.Status().Sources)
}

func echo(t *testing.T, addr string, msg string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo through %s: %q, %v", addr, got, err)
	}
}
