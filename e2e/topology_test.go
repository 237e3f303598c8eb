package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// topology is a server, a destination client exposing echod under some
// names, and a source client listening for the same names, all on loopback.
type topology struct {
	dir string

	serverPort, relayPort, serverStatus int
	echoPort                            int
	dstStatus, srcStatus                int
	srcPorts                            map[string]int

	server, dst, src, echo *proc
	routes                 map[string][2]string // name → {source route, destination route}
	env                    []string             // extra environment of every connetd
}

// endpoint is one name offered by the destination and used by the source.
type endpoint struct {
	name               string
	srcRoute, dstRoute string
}

func newTopology(t *testing.T, eps ...endpoint) *topology {
	t.Helper()
	tp := &topology{dir: t.TempDir(), srcPorts: map[string]int{}, routes: map[string][2]string{}}
	writeCert(t, tp.dir)
	tp.serverPort, tp.relayPort, tp.serverStatus = freePort(t), freePort(t), freePort(t)
	tp.echoPort, tp.dstStatus, tp.srcStatus = freePort(t), freePort(t), freePort(t)
	for _, ep := range eps {
		tp.srcPorts[ep.name] = freePort(t)
		tp.routes[ep.name] = [2]string{ep.srcRoute, ep.dstRoute}
	}
	writeFile(t, tp.dir, "server.toml", fmt.Sprintf(`log-level = "debug"
[server]
tokens = ["client-d-token", "client-s-token"]
cert-file = "cert.pem"
key-file = "key.pem"
addr = %q
relay-addr = %q
relay-hostname = "127.0.0.1"
status-addr = %q
store-dir = "server-store"
`, addr(tp.serverPort), addr(tp.relayPort), addr(tp.serverStatus)))
	tp.writeClient(t, "dst.toml", "client-d-token", tp.dstStatus, "destinations", func(name string) string {
		return fmt.Sprintf("addr = %q\nroute = %q\n", addr(tp.echoPort), tp.routes[name][1])
	})
	tp.writeClient(t, "src.toml", "client-s-token", tp.srcStatus, "sources", func(name string) string {
		return fmt.Sprintf("addr = %q\nroute = %q\n", addr(tp.srcPorts[name]), tp.routes[name][0])
	})
	return tp
}

func (tp *topology) names() []string {
	var out []string
	for n := range tp.routes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (tp *topology) writeClient(t *testing.T, file, token string, status int, table string, body func(string) string) {
	var b strings.Builder
	fmt.Fprintf(&b, "log-level = \"debug\"\n[client]\ntoken = %q\nserver-addr = %q\nserver-cas = \"cert.pem\"\ndirect-addr = %q\nstatus-addr = %q\n",
		token, addr(tp.serverPort), addr(freePort(t)), addr(status))
	for _, n := range tp.names() {
		fmt.Fprintf(&b, "\n[client.%s.%s]\n%s", table, n, body(n))
	}
	writeFile(t, tp.dir, file, b.String())
}

func (tp *topology) connetd(t *testing.T, name string, args ...string) *proc {
	cmd := exec.Command(filepath.Join(binDir, "connetd"), args...)
	cmd.Dir = tp.dir
	// Each daemon has its own state directory, as each systemd instance has.
	cmd.Env = append(append(os.Environ(), "STATE_DIRECTORY="+filepath.Join(tp.dir, "state-"+name)), tp.env...)
	return startCmd(t, name, cmd)
}

func (tp *topology) startServer(t *testing.T) {
	tp.server = tp.connetd(t, "server", "server", "--config", "server.toml")
	tp.server.waitLog(t, "control listening for clients", 10*time.Second)
}

func (tp *topology) startEcho(t *testing.T) {
	tp.echo = startProc(t, tp.dir, "echod", filepath.Join(binDir, "echod"), addr(tp.echoPort))
	tp.echo.waitLog(t, "listening", 10*time.Second)
}

func (tp *topology) startClients(t *testing.T) {
	tp.dst = tp.connetd(t, "dst", "--config", "dst.toml")
	tp.src = tp.connetd(t, "src", "--config", "src.toml")
}

// start brings everything up and waits until every source has its path.
func (tp *topology) start(t *testing.T) {
	t.Helper()
	tp.startEcho(t)
	tp.startDaemons(t)
}

// startDaemons starts the server and both clients, with the destination
// service already listening on echoPort, and waits until every source has
// its path.
func (tp *topology) startDaemons(t *testing.T) {
	t.Helper()
	tp.startServer(t)
	tp.startClients(t)
	for name, r := range tp.routes {
		want := "direct"
		if r[0] == "relay" || r[1] == "relay" {
			want = "relay"
		}
		waitPath(t, addr(tp.srcStatus), name, want, 15*time.Second)
	}
}

func (tp *topology) srcAddr(name string) string { return addr(tp.srcPorts[name]) }
