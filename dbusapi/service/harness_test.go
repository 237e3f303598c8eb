package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/daemon"
	"github.com/connetd/connetd/dbusapi"
	"github.com/connetd/connetd/internal/syncbuf"
	"github.com/connetd/connetd/internal/testcert"
	"github.com/connetd/connetd/internal/testport"
)

// lab is a server and clients running in this process on loopback, as
// connetd would run them: daemon.New on a configuration file, then Run.
type lab struct {
	t          *testing.T
	dir        string
	serverAddr string
}

func newLab(t *testing.T) *lab {
	dir := t.TempDir()
	if _, err := testcert.Write(dir); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, dir: dir, serverAddr: freeAddr(t, "udp")}
	l.start("server", fmt.Sprintf(`[server]
tokens = ["t-dst", "t-src"]
cert-file = %q
key-file = %q
addr = %q
relay-addr = %q
relay-hostname = "127.0.0.1"
store-dir = %q
`, l.path("cert.pem"), l.path("key.pem"), l.serverAddr, freeAddr(t, "udp"), l.path("server-store")))
	return l
}

// client starts a client named name (its instance name) whose [client]
// table ends with extra.
func (l *lab) client(name, token, extra string) *running {
	return l.start(name, fmt.Sprintf(`[client]
token = %q
server-addr = %q
server-cas = %q
direct-addr = %q
%s`, token, l.serverAddr, l.path("cert.pem"), freeAddr(l.t, "udp"), extra))
}

// path is a file of the lab's: the daemons run in the test's directory.
func (l *lab) path(name string) string { return filepath.Join(l.dir, name) }

// running is one daemon; stop ends it and waits for it.
type running struct {
	d    *daemon.Daemon
	stop func()
}

func (l *lab) start(name, body string) *running {
	t := l.t
	path := l.path(name + ".toml")
	if err := os.WriteFile(path, []byte("tune-udp-buffers = false\n"+body), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// A client's state goes to STATE_DIRECTORY, read once by New.
	t.Setenv("STATE_DIRECTORY", l.path(name+"-state"))
	logs := &syncbuf.Buffer{}
	d, err := daemon.New(f, daemon.Options{Version: "test", Stderr: logs})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	r := &running{d: d, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("--- %s ---\n%s", name, logs.String())
		}
	})
	return r
}

// serveBus offers d's API on the bus at addr until the test ends, and
// returns once its name is owned.
func serveBus(t *testing.T, busAddr string, d *daemon.Daemon) {
	conn, err := dbus.Connect(busAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, conn, d) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		conn.Close()
	})
	watcher := connect(t, busAddr)
	name := dbusapi.BusName(d.Instance())
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var has bool
		if err := watcher.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has); err == nil && has {
			return
		}
	}
	t.Fatalf("%s never appeared on the bus", name)
}

func connect(t *testing.T, busAddr string) *dbus.Conn {
	conn, err := dbus.Connect(busAddr)
	if err != nil {
		t.Fatalf("connect to the private bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// freeAddr is a loopback address with a port free right now, for TCP
// and UDP alike.
func freeAddr(t *testing.T, _ string) string { return testport.Addr(t) }
