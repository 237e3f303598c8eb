package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Endpoint kinds of connet v0.15 through the real binaries: a file
// destination behind an http source with a prefix (direct), a tls source
// reaching a tls service through a tls destination that verifies it (relay),
// a ws source reaching echod (direct).
func TestEndpointKindsThroughTheDaemons(t *testing.T) {
	tp := newTopology(t, endpoint{name: "files", srcRoute: "direct", dstRoute: "direct"},
		endpoint{name: "tlsecho", srcRoute: "relay", dstRoute: "relay"},
		endpoint{name: "ws", srcRoute: "direct", dstRoute: "direct"})
	if err := os.MkdirAll(filepath.Join(tp.dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, tp.dir, "www/index.txt", "served by a file destination")
	cert, err := tls.LoadX509KeyPair(filepath.Join(tp.dir, "cert.pem"), filepath.Join(tp.dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := readFileBytes(tp.dir, "cert.pem")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tlsSvc, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer tlsSvc.Close()
	go func() {
		for {
			c, err := tlsSvc.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	tp.writeClient(t, "dst.toml", "client-d-token", tp.dstStatus, "destinations", func(name string) string {
		switch name {
		case "files":
			return "url = \"file:./www\"\nroute = \"direct\"\n"
		case "tlsecho":
			return fmt.Sprintf("url = \"tls://%s\"\ncas-file = \"cert.pem\"\nserver-name = \"localhost\"\ndial-timeout = 3000\nroute = \"relay\"\n", tlsSvc.Addr())
		}
		return fmt.Sprintf("url = \"tcp://%s\"\nroute = \"direct\"\n", addr(tp.echoPort))
	})
	tp.writeClient(t, "src.toml", "client-s-token", tp.srcStatus, "sources", func(name string) string {
		switch name {
		case "files":
			return fmt.Sprintf("url = \"http://%s/static\"\nroute = \"direct\"\n", tp.srcAddr(name))
		case "tlsecho":
			return fmt.Sprintf("url = \"tls://%s\"\ncert-file = \"cert.pem\"\nkey-file = \"key.pem\"\nroute = \"relay\"\n", tp.srcAddr(name))
		}
		return fmt.Sprintf("url = \"ws://%s\"\nroute = \"direct\"\n", tp.srcAddr(name))
	})
	tp.start(t)

	t.Run("file via http source", func(t *testing.T) {
		hc := &http.Client{Timeout: 10 * time.Second}
		resp, err := hc.Get("http://" + tp.srcAddr("files") + "/static/index.txt")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "served by a file destination" {
			t.Fatalf("got %d %q", resp.StatusCode, b)
		}
		resp, err = hc.Get("http://" + tp.srcAddr("files") + "/index.txt")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("outside the prefix: %d", resp.StatusCode)
		}
	})
	t.Run("tls to tls over relay", func(t *testing.T) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tp.srcAddr("tlsecho"), &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := strings.Repeat("tls end to end ", 1000)
		go func() { _, _ = c.Write([]byte(msg)) }()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo: %v", err)
		}
	})
	t.Run("websocket to tcp", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		wc, _, err := websocket.Dial(ctx, "ws://"+tp.srcAddr("ws"), nil)
		if err != nil {
			t.Fatal(err)
		}
		conn := websocket.NetConn(ctx, wc, websocket.MessageBinary)
		defer conn.Close()
		if _, err := conn.Write([]byte("ping over websocket")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len("ping over websocket"))
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping over websocket" {
			t.Fatalf("echo: %q %v", got, err)
		}
	})
}
