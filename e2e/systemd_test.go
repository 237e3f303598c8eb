package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/testenv"
)

// activated starts connetd the way systemd does: the sockets as fds 3…,
// LISTEN_FDS/LISTEN_FDNAMES, and LISTEN_PID set to the exec'd process.
func activated(t *testing.T, dir, name string, files []*os.File, fdNames []string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, filepath.Join(binDir, "connetd")}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), fmt.Sprintf("LISTEN_FDS=%d", len(files)), "LISTEN_FDNAMES="+strings.Join(fdNames, ":"))
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = files
	p := startCmd(t, name, cmd)
	for _, f := range files {
		f.Close() // the child has its copies
	}
	return p
}

func udpFile(t *testing.T, port int) *os.File {
	t.Helper()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	f, err := u.File()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func tcpFile(t *testing.T, port int) *os.File {
	t.Helper()
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSocketActivatedListenersCarryTraffic(t *testing.T) {
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "relay"})
	tp.startEcho(t)
	// The config files name ports that are not bound: every listener must
	// come from the passed sockets for traffic to flow.
	metricsPort := freePort(t)
	writeFile(t, tp.dir, "server.toml", readFile(t, tp.dir, "server.toml")+fmt.Sprintf("metrics-addr = %q\n", addr(metricsPort)))
	server := activated(t, tp.dir, "server",
		[]*os.File{udpFile(t, tp.serverPort), udpFile(t, tp.relayPort), tcpFile(t, tp.serverStatus), tcpFile(t, metricsPort)},
		[]string{"control", "relay", "status", "metrics"}, nil, "server", "--config", "server.toml")
	server.waitLog(t, "control listening for clients", 10*time.Second)
	tp.dst = tp.connetd(t, "dst", "--config", "dst.toml")
	srcDirect := freePort(t)
	cfg := readFile(t, tp.dir, "src.toml")
	writeFile(t, tp.dir, "src.toml", strings.Replace(cfg, "direct-addr = ", "direct-addr = \"127.0.0.1:9\"\n#", 1))
	src := activated(t, tp.dir, "src",
		[]*os.File{udpFile(t, srcDirect), tcpFile(t, tp.srcPorts["svc"])},
		[]string{"direct", "source-svc"}, nil, "--config", "src.toml")
	waitPath(t, addr(tp.srcStatus), "svc", "relay", 15*time.Second)
	got, err := echoRoundTrip(tp.srcAddr("svc"), []byte("through activated sockets"))
	if err != nil || string(got) != "through activated sockets" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if text, err := scrapeOnce(metricsPort); err != nil || !strings.Contains(text, "connetd_relay_clients") {
		t.Errorf("metrics from the passed socket: %v\n%s", err, text)
	}
	for _, p := range []*proc{server, src} {
		if n := strings.Count(p.out.String(), "using socket from systemd"); n < 2 {
			t.Errorf("%s used %d sockets from systemd, want every passed one", p.name, n)
		}
		if strings.Contains(p.out.String(), "match no configured listener") {
			t.Errorf("%s left a passed socket unused", p.name)
		}
	}
	var st map[string]any
	if err := getJSON(addr(tp.srcStatus), &st); err != nil {
		t.Fatal(err)
	}
	bufs, _ := st["udp_buffers"].(map[string]any)
	direct, ok := bufs["direct"].(map[string]any)
	if !ok {
		t.Fatalf("status does not report the direct socket's buffers: %v", st["udp_buffers"])
	}
	// Privileged, the daemon forces the buffers QUIC wants past rmem_max.
	if rcv, _ := direct["receive"].(float64); os.Geteuid() == 0 && rcv < 7<<20 {
		t.Errorf("running as root, the direct socket's receive buffer is %v, want at least 7 MiB", rcv)
	}
}

func TestSourceStartedBySystemdSocketActivateOnFirstConnection(t *testing.T) {
	testenv.RequireTool(t, "systemd-socket-activate", "systemd")
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.startEcho(t)
	tp.startServer(t)
	tp.dst = tp.connetd(t, "dst", "--config", "dst.toml")
	// systemd-socket-activate holds the source port and execs connetd at
	// the first connection, passing the listening socket.
	cmd := exec.Command("systemd-socket-activate", "-l", tp.srcAddr("svc"), "--fdname=source-svc",
		filepath.Join(binDir, "connetd"), "--config", "src.toml")
	cmd.Dir = tp.dir
	sa := startCmd(t, "socket-activate", cmd)
	sa.waitLog(t, "Listening on", 10*time.Second)
	if strings.Contains(sa.out.String(), "connetd started") {
		t.Fatal("connetd started before any connection")
	}
	got, err := echoRoundTrip(tp.srcAddr("svc"), []byte("first traffic starts the source"))
	if err != nil || string(got) != "first traffic starts the source" {
		t.Fatalf("echo: %q, %v\n%s", got, err, sa.out.String())
	}
	if !strings.Contains(sa.out.String(), `using socket from systemd" role=client fd_name=source-svc`) &&
		!strings.Contains(sa.out.String(), "fd_name=source-svc") {
		t.Errorf("connetd did not take the source socket from systemd")
	}
}

// notifySocket is a fake systemd notify socket.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
	conn *net.UnixConn
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify")}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n.conn = c
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return n
}

func (n *notifySocket) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// waitFor returns the index of the first message at or after from that
// contains s.
func (n *notifySocket) waitFor(t *testing.T, from int, s string, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		msgs := n.all()
		for i := from; i < len(msgs); i++ {
			if strings.Contains(msgs[i], s) {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no notify message with %q after message %d within %s; got %q", s, from, timeout, n.all())
	return 0
}

func TestNotifyReadyOnlyWhenServingWithStatusWatchdogReloadAndStopping(t *testing.T) {
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.startEcho(t)
	ns := newNotifySocket(t)
	cmd := exec.Command(filepath.Join(binDir, "connetd"), "--config", "src.toml")
	cmd.Dir = tp.dir
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+ns.path, "WATCHDOG_USEC=300000")
	src := startCmd(t, "src", cmd)
	src.waitLog(t, "control server unreachable", 10*time.Second)
	for _, m := range ns.all() {
		if strings.Contains(m, "READY=1") {
			t.Fatalf("READY=1 sent before the client registered with control: %q", ns.all())
		}
	}
	tp.startServer(t)
	tp.dst = tp.connetd(t, "dst", "--config", "dst.toml")
	ready := ns.waitFor(t, 0, "READY=1", 15*time.Second)
	if !strings.Contains(ns.all()[ready], "STATUS=") {
		t.Errorf("READY=1 came without a STATUS=: %q", ns.all()[ready])
	}
	ns.waitFor(t, 0, "STATUS=1 source, 0 destinations; control connected; 1 peer direct, 0 relayed", 10*time.Second)

	// WATCHDOG_USEC=300ms: pings every 100ms while healthy.
	before := countMsgs(ns.all(), "WATCHDOG=1")
	time.Sleep(time.Second)
	if n := countMsgs(ns.all(), "WATCHDOG=1") - before; n < 5 || n > 15 {
		t.Errorf("%d watchdog pings in 1s with WATCHDOG_USEC=300000, want about 10", n)
	}

	mark := len(ns.all())
	if err := src.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloading := ns.waitFor(t, mark, "RELOADING=1", 5*time.Second)
	if !strings.Contains(ns.all()[reloading], "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", ns.all()[reloading])
	}
	ns.waitFor(t, reloading+1, "READY=1", 5*time.Second)

	mark = len(ns.all())
	src.stop(t)
	ns.waitFor(t, mark, "STOPPING=1", 5*time.Second)
}

func countMsgs(msgs []string, s string) int {
	n := 0
	for _, m := range msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

func TestReloadKeepsUnchangedFlowsAndRejectsABrokenConfig(t *testing.T) {
	tp := newTopology(t,
		endpoint{name: "keep", srcRoute: "any", dstRoute: "any"},
		endpoint{name: "gone", srcRoute: "any", dstRoute: "any"},
		endpoint{name: "later", srcRoute: "any", dstRoute: "any"},
	)
	// The source starts without "later"; a reload adds it and drops "gone".
	full := readFile(t, tp.dir, "src.toml")
	writeFile(t, tp.dir, "src.toml", dropTable(full, "[client.sources.later]"))
	tp.startEcho(t)
	tp.startServer(t)
	tp.startClients(t)
	waitPath(t, addr(tp.srcStatus), "keep", "direct", 15*time.Second)
	flow, err := net.DialTimeout("tcp", tp.srcAddr("keep"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer flow.Close()
	if err := echoOnce(flow, []byte("before reload")); err != nil {
		t.Fatal(err)
	}

	writeFile(t, tp.dir, "src.toml", dropTable(full, "[client.sources.gone]"))
	if err := tp.src.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	tp.src.waitLog(t, "configuration reloaded", 5*time.Second)
	if err := echoOnce(flow, []byte("after reload")); err != nil {
		t.Fatalf("flow through an unchanged endpoint broke on reload: %v", err)
	}
	if c, err := net.DialTimeout("tcp", tp.srcAddr("gone"), time.Second); err == nil {
		c.Close()
		t.Error("a source removed by the reload still listens")
	}
	waitPath(t, addr(tp.srcStatus), "later", "direct", 10*time.Second)
	if got, err := echoRoundTrip(tp.srcAddr("later"), []byte("added by reload")); err != nil || string(got) != "added by reload" {
		t.Fatalf("source added by reload: %q, %v", got, err)
	}

	writeFile(t, tp.dir, "src.toml", full+"\n[client.sources.broken]\naddr = \":1\"\nroute = \"nowhere\"\n")
	if err := tp.src.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	tp.src.waitLog(t, "reload rejected; the running configuration stays in force", 5*time.Second)
	if !strings.Contains(tp.src.out.String(), "client.sources.broken.route") {
		t.Error("the rejected reload's log does not name the bad key")
	}
	if err := echoOnce(flow, []byte("after a rejected reload")); err != nil {
		t.Fatalf("flow broke on a rejected reload: %v", err)
	}
	if got, err := echoRoundTrip(tp.srcAddr("later"), []byte("still here")); err != nil || string(got) != "still here" {
		t.Fatalf("endpoint of the running config after a rejected reload: %q, %v", got, err)
	}
}

// dropTable removes a [table] and its keys from a config text.
func dropTable(text, header string) string {
	var out []string
	skipping := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "[") {
			skipping = line == header
		}
		if !skipping {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func TestPrivilegedSourcePortFromSocketWithoutRootInTheDaemon(t *testing.T) {
	testenv.RequireRoot(t, "bind a privileged port and drop to nobody")
	testenv.RequireTool(t, "setpriv", "util-linux")
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.startEcho(t)
	tp.startServer(t)
	tp.dst = tp.connetd(t, "dst", "--config", "dst.toml")
	// The daemon runs as nobody; it must read its config and CA file.
	for _, p := range []string{tp.dir, binDir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"src.toml", "cert.pem"} {
		if err := os.Chmod(filepath.Join(tp.dir, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const port = 1023 // below 1024: only root may bind it
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		testenv.Missing(t, "cannot bind 127.0.0.1:%d here: %v", port, err)
	}
	f, err := ln.File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(readFile(t, tp.dir, "src.toml"), fmt.Sprintf("%q", tp.srcAddr("svc")), fmt.Sprintf("\"127.0.0.1:%d\"", port), 1)
	writeFile(t, tp.dir, "src.toml", cfg)
	if err := os.Chmod(filepath.Join(tp.dir, "src.toml"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
		"sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, filepath.Join(binDir, "connetd"), "--config", "src.toml")
	cmd.Dir = tp.dir
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=source-svc")
	cmd.ExtraFiles = []*os.File{f}
	src := startCmd(t, "src-as-nobody", cmd)
	f.Close()
	waitPath(t, addr(tp.srcStatus), "svc", "direct", 15*time.Second)
	got, err := echoRoundTrip(fmt.Sprintf("127.0.0.1:%d", port), []byte("privileged port, unprivileged daemon"))
	if err != nil || string(got) != "privileged port, unprivileged daemon" {
		t.Fatalf("echo: %q, %v\n%s", got, err, src.out.String())
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", src.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Uid:\s+65534\s`).Match(status) {
		t.Fatalf("daemon is not running as nobody:\n%s", status)
	}
}

func TestServerReloadRevokesARemovedToken(t *testing.T) {
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.start(t)
	cfg := readFile(t, tp.dir, "server.toml")
	writeFile(t, tp.dir, "server.toml", strings.Replace(cfg, `"client-d-token", "client-s-token"`, `"client-d-token"`, 1))
	if err := tp.server.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	tp.server.waitLog(t, "configuration reloaded", 5*time.Second)
	tp.src.waitLog(t, "control server refused this client; check the token", 10*time.Second)
	if strings.Contains(tp.dst.out.String(), "control server refused") {
		t.Error("the client whose token was kept was refused too")
	}
}
