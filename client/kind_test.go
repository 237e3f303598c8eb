package client_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/internal/testcert"
	"github.com/connetd/connetd/wire"
)

func newCert(t *testing.T) *testcert.Cert {
	t.Helper()
	c, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tlsEcho echoes over TLS with cert until the test ends.
func tlsEcho(t *testing.T, cert *testcert.Cert) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert.TLS}})
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
				_, _ = io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

// pair starts a destination and a source of endpoint "svc" on route and
// waits for the source's path.
func pair(t *testing.T, route string, dst client.DestinationConfig, src client.SourceConfig) *client.Client {
	t.Helper()
	l := newLab(t)
	dst.Route, src.Route = route, route
	l.client("dst", client.Config{}, func(c *client.Client) { must(t, c.AddDestination("svc", dst)) })
	s := l.client("src", client.Config{}, func(c *client.Client) { must(t, c.AddSource("svc", src)) })
	path := route
	if route == wire.RouteAny {
		path = "direct"
	}
	waitPath(t, s, "svc", path)
	return s
}

var routes = []string{wire.RouteDirect, wire.RouteRelay}

// A tcp source reaches a TLS service through a tls destination that
// verifies it against a CA; a destination that trusts another CA fails.
func TestKindTLSDestination(t *testing.T) {
	for _, route := range routes {
		t.Run(route, func(t *testing.T) {
			cert := newCert(t)
			svc := tlsEcho(t, cert)
			src := pair(t, route,
				client.DestinationConfig{Addr: svc, Kind: client.Kind{Scheme: "tls", TLS: &tls.Config{RootCAs: cert.Pool}}},
				client.SourceConfig{Addr: "127.0.0.1:0"})
			addr := sourceStatus(t, src, "svc").Addr
			echo(t, addr, "hello over tls")
			echo(t, addr, strings.Repeat("big ", 100000))
		})
	}
	t.Run("untrusted", func(t *testing.T) {
		svc := tlsEcho(t, newCert(t))
		src := pair(t, wire.RouteDirect,
			client.DestinationConfig{Addr: svc, Kind: client.Kind{Scheme: "tls", TLS: &tls.Config{RootCAs: newCert(t).Pool}}},
			client.SourceConfig{Addr: "127.0.0.1:0"})
		c, err := net.Dial("tcp", sourceStatus(t, src, "svc").Addr)
		must(t, err)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write([]byte("x"))
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("read %d bytes from a service whose certificate is not trusted", n)
		}
	})
}

// backend is an HTTP service that answers with what it was asked.
func backend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/conn" {
			fmt.Fprint(w, r.RemoteAddr)
			return
		}
		fmt.Fprintf(w, "path=%s host=%s xff=%s proto=%s", r.URL.Path, r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func get(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp.StatusCode, string(b)
}

// An http source under a prefix reaches an http destination under a base
// path: the prefix is stripped, the base path prepended, Host is the
// backend's, X-Forwarded-For the client's; requests outside the prefix get
// 404; keep-alive requests share one stream.
func TestKindHTTPSourceToHTTPDestination(t *testing.T) {
	for _, route := range routes {
		t.Run(route, func(t *testing.T) {
			be := backend(t)
			src := pair(t, route,
				client.DestinationConfig{Addr: be, Kind: client.Kind{Scheme: "http", Path: "/api"}},
				client.SourceConfig{Addr: "127.0.0.1:0", Kind: client.Kind{Scheme: "http", Path: "/app"}})
			base := "http://" + sourceStatus(t, src, "svc").Addr
			hc := &http.Client{Transport: &http.Transport{}}
			defer hc.CloseIdleConnections()
			for range 3 {
				code, body := get(t, hc, base+"/app/x/y")
				want := fmt.Sprintf("path=/api/x/y host=%s xff=127.0.0.1 proto=http", be)
				if code != 200 || body != want {
					t.Fatalf("got %d %q, want %q", code, body, want)
				}
			}
			if code, _ := get(t, hc, base+"/other"); code != http.StatusNotFound {
				t.Fatalf("outside the prefix: %d, want 404", code)
			}
			if code, _ := get(t, hc, base+"/application"); code != http.StatusNotFound {
				t.Fatalf("a path that only starts like the prefix: %d, want 404", code)
			}
			if n := sourceStatus(t, src, "svc").Peers; len(n) == 0 {
				t.Fatal("no peer")
			}
		})
	}
}

// An http source reaches a plain tcp destination: the request arrives as
// the client sent it (prefix stripped), and each client connection is one
// stream, kept for its keep-alive requests.
func TestKindHTTPSourceToTCPDestination(t *testing.T) {
	be := backend(t)
	src := pair(t, wire.RouteDirect,
		client.DestinationConfig{Addr: be},
		client.SourceConfig{Addr: "127.0.0.1:0", Kind: client.Kind{Scheme: "http", Path: "/p/"}})
	base := "http://" + sourceStatus(t, src, "svc").Addr
	code, body := get(t, http.DefaultClient, base+"/p/q")
	// The client's Host; no X-Forwarded-For (only an http destination sets
	// it), the source's scheme as X-Forwarded-Proto.
	if want := "path=/q host=" + strings.TrimPrefix(base, "http://") + " xff= proto=http"; code != 200 || body != want {
		t.Fatalf("got %d %q, want %q", code, body, want)
	}
	// One client connection, several requests: one stream, so one
	// connection to the service; a second client connection, another.
	conns := map[string]bool{}
	for range 2 {
		hc := &http.Client{Transport: &http.Transport{}}
		for range 3 {
			_, remote := get(t, hc, base+"/p/conn")
			conns[remote] = true
		}
		hc.CloseIdleConnections()
	}
	if len(conns) != 2 {
		t.Fatalf("2 client connections of 3 requests each reached the service over %d connections: %v", len(conns), conns)
	}
}

// An https source that requires client certificates: a client with one
// signed by its CA gets through to an http destination (which is told the
// request came over https), one without is refused.
func TestKindHTTPSSourceClientCert(t *testing.T) {
	srvCert, clientCert := newCert(t), newCert(t)
	be := backend(t)
	src := pair(t, wire.RouteDirect,
		client.DestinationConfig{Addr: be, Kind: client.Kind{Scheme: "http"}},
		client.SourceConfig{Addr: "127.0.0.1:0", Kind: client.Kind{Scheme: "https", TLS: &tls.Config{
			Certificates: []tls.Certificate{srvCert.TLS}, ClientCAs: clientCert.Pool, ClientAuth: tls.RequireAndVerifyClientCert}}})
	url := "https://" + sourceStatus(t, src, "svc").Addr + "/z"
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srvCert.Pool, Certificates: []tls.Certificate{clientCert.TLS}}}}
	defer hc.CloseIdleConnections()
	code, body := get(t, hc, url)
	if want := fmt.Sprintf("path=/z host=%s xff=127.0.0.1 proto=https", be); code != 200 || body != want {
		t.Fatalf("got %d %q, want %q", code, body, want)
	}
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srvCert.Pool}}}
	if resp, err := anon.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("a client without a certificate got through")
	}
}

// A ws source carries each WebSocket connection to a tcp destination as
// one TCP connection; a wss one the same, over TLS.
func TestKindWebSocketSource(t *testing.T) {
	cert := newCert(t)
	for _, route := range append(routes, "wss") {
		t.Run(route, func(t *testing.T) {
			kind, opts := client.Kind{Scheme: "ws"}, &websocket.DialOptions{}
			if route == "wss" {
				route = wire.RouteDirect
				kind = client.Kind{Scheme: "wss", TLS: &tls.Config{Certificates: []tls.Certificate{cert.TLS}}}
				opts.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.Pool}}}
			}
			src := pair(t, route,
				client.DestinationConfig{Addr: echoServer(t)},
				client.SourceConfig{Addr: "127.0.0.1:0", Kind: kind})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			wc, _, err := websocket.Dial(ctx, kind.Scheme+"://"+sourceStatus(t, src, "svc").Addr+"/", opts)
			must(t, err)
			conn := websocket.NetConn(ctx, wc, websocket.MessageBinary)
			defer conn.Close()
			msg := strings.Repeat("websocket bytes ", 10000)
			go func() { _, _ = conn.Write([]byte(msg)) }()
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(conn, got); err != nil || string(got) != msg {
				t.Fatalf("echo over websocket: %v", err)
			}
		})
	}
}

// A file destination serves a directory over each stream: to an http
// source's clients, and to a tcp source's plain HTTP clients.
func TestKindFileDestination(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello, files"), 0o644))
	for _, route := range routes {
		for _, kind := range []string{"http", "tcp"} {
			t.Run(route+"/"+kind, func(t *testing.T) {
				src := pair(t, route,
					client.DestinationConfig{Kind: client.Kind{Scheme: "file", Path: dir}},
					client.SourceConfig{Addr: "127.0.0.1:0", Kind: client.Kind{Scheme: kind}})
				hc := &http.Client{Transport: &http.Transport{}}
				defer hc.CloseIdleConnections()
				code, body := get(t, hc, "http://"+sourceStatus(t, src, "svc").Addr+"/hello.txt")
				if code != 200 || body != "hello, files" {
					t.Fatalf("got %d %q", code, body)
				}
				if code, _ := get(t, hc, "http://"+sourceStatus(t, src, "svc").Addr+"/missing"); code != 404 {
					t.Fatalf("missing file: %d", code)
				}
			})
		}
	}
}

// A tls source ends TLS (requiring a client certificate) and carries the
// plain bytes to an http destination.
func TestKindTLSSourceToHTTPDestination(t *testing.T) {
	srvCert, clientCert := newCert(t), newCert(t)
	be := backend(t)
	src := pair(t, wire.RouteDirect,
		client.DestinationConfig{Addr: be, Kind: client.Kind{Scheme: "http", Path: "/b"}},
		client.SourceConfig{Addr: "127.0.0.1:0", Kind: client.Kind{Scheme: "tls", TLS: &tls.Config{
			Certificates: []tls.Certificate{srvCert.TLS}, ClientCAs: clientCert.Pool, ClientAuth: tls.RequireAndVerifyClientCert}}})
	c, err := tls.Dial("tcp", sourceStatus(t, src, "svc").Addr, &tls.Config{RootCAs: srvCert.Pool, Certificates: []tls.Certificate{clientCert.TLS}})
	must(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /q HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	must(t, err)
	b, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("path=/b/q host=%s xff=127.0.0.1 proto=http", be); string(b) != want {
		t.Fatalf("got %q, want %q", b, want)
	}
}

// A balancing source that may retry asks each destination to confirm its
// dial (connect.ack); destinations of every kind answer, not only tcp.
func TestKindDestinationsConfirmABalancingSource(t *testing.T) {
	cert := newCert(t)
	svc := tlsEcho(t, cert)
	l := newLab(t)
	for _, name := range []string{"dst1", "dst2"} {
		l.client(name, client.Config{}, func(c *client.Client) {
			must(t, c.AddDestination("svc", client.DestinationConfig{Addr: svc,
				Kind: client.Kind{Scheme: "tls", TLS: &tls.Config{RootCAs: cert.Pool}}}))
		})
	}
	src := l.client("src", client.Config{}, func(c *client.Client) {
		must(t, c.AddSource("svc", client.SourceConfig{Addr: "127.0.0.1:0",
			LB: client.LBConfig{Policy: client.LBRoundRobin, Retry: client.LBRetryAll}}))
	})
	waitPeers(t, src, "svc", 2)
	addr := sourceStatus(t, src, "svc").Addr
	for i := range 4 {
		start := time.Now()
		echo(t, addr, fmt.Sprintf("balanced over tls %d", i))
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("connection %d took %v: the destination did not confirm", i, d)
		}
	}
}
