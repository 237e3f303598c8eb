package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// controlView is the part of a client's or relay's status that names the
// control in use.
type controlView struct {
	Control     string `json:"control"`
	ControlAddr string `json:"control_addr"`
	ControlNode string `json:"control_node"`
}

// waitControlNode polls a status endpoint until it names node as its
// control (and, for a client, says connected); it returns when that was
// first seen.
func waitControlNode(t *testing.T, statusAddr, node string, timeout time.Duration) (time.Time, controlView) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var v controlView
	for time.Now().Before(deadline) {
		v = controlView{}
		if err := getJSON(statusAddr, &v); err == nil && v.ControlNode == node && (v.Control == "" || v.Control == "connected") {
			return time.Now(), v
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: control %+v, want node %s within %s", statusAddr, v, node, timeout)
	return time.Time{}, v
}

// kill9 is a crash: the process sends nothing on its way out.
func kill9(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// controlPair is two independent control nodes sharing the tokens and the
// certificate (no shared state: each learns the clients that come to it).
type controlPair struct {
	ports [2]int // client ports
	procs [2]*proc
}

func (cp controlPair) list() string { return addr(cp.ports[0]) + "," + addr(cp.ports[1]) }

func startServerPair(t *testing.T, tp *topology) controlPair {
	var cp controlPair
	for i, node := range []string{"ctl-a", "ctl-b"} {
		cp.ports[i] = freePort(t)
		file := "server-" + node + ".toml"
		writeFile(t, tp.dir, file, fmt.Sprintf(`log-level = "debug"
[server]
node-name = %q
tokens = ["client-d-token", "client-s-token"]
cert-file = "cert.pem"
key-file = "key.pem"
addr = %q
relay-addr = %q
relay-hostname = "127.0.0.1"
store-dir = "store-%s"
`, node, addr(cp.ports[i]), addr(freePort(t)), node))
		cp.procs[i] = tp.connetd(t, node, "server", "--config", file)
		cp.procs[i].waitLog(t, "control listening for clients", 10*time.Second)
	}
	return cp
}

// TestClientsFailOverToTheNextControlWithin2s: with server-addr naming two
// servers, a kill -9 of the first moves both clients to the second within
// 2 s; the direct flow opened before goes on, and new ones work.
func TestClientsFailOverToTheNextControlWithin2s(t *testing.T) {
	tp := newTopology(t, endpoint{name: "d", srcRoute: "direct", dstRoute: "direct"})
	cp := startServerPair(t, tp)
	for _, c := range []struct{ file, token, table string }{
		{"dst.toml", "client-d-token", "destinations"},
		{"src.toml", "client-s-token", "sources"},
	} {
		status := tp.dstStatus
		body := fmt.Sprintf("addr = %q\nroute = \"direct\"\n", addr(tp.echoPort))
		if c.table == "sources" {
			status, body = tp.srcStatus, fmt.Sprintf("addr = %q\nroute = \"direct\"\n", tp.srcAddr("d"))
		}
		writeFile(t, tp.dir, c.file, fmt.Sprintf("log-level = \"debug\"\n[client]\ntoken = %q\nserver-addr = %q\nserver-cas = \"cert.pem\"\ndirect-addr = %q\nstatus-addr = %q\n\n[client.%s.d]\n%s",
			c.token, cp.list(), addr(freePort(t)), addr(status), c.table, body))
	}
	tp.startEcho(t)
	tp.startClients(t)
	waitPath(t, addr(tp.srcStatus), "d", "direct", 15*time.Second)
	for _, st := range []int{tp.srcStatus, tp.dstStatus} {
		if _, v := waitControlNode(t, addr(st), "ctl-a", 5*time.Second); v.ControlAddr != addr(cp.ports[0]) {
			t.Fatalf("control_addr %q, want %s", v.ControlAddr, addr(cp.ports[0]))
		}
	}
	flow := openFlow(t, tp.srcAddr("d"))

	killed := time.Now()
	kill9(t, cp.procs[0])
	at, v := waitControlNode(t, addr(tp.srcStatus), "ctl-b", 10*time.Second)
	took := at.Sub(killed)
	t.Logf("source registered with ctl-b (%s) %s after the kill -9 of ctl-a", v.ControlAddr, took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("failover took %s, want ≤ 2s", took.Round(time.Millisecond))
	}
	if v.ControlAddr != addr(cp.ports[1]) {
		t.Errorf("control_addr %q, want %s", v.ControlAddr, addr(cp.ports[1]))
	}
	atDst, _ := waitControlNode(t, addr(tp.dstStatus), "ctl-b", 10*time.Second)
	t.Logf("destination registered with ctl-b %s after the kill", atDst.Sub(killed).Round(time.Millisecond))

	if err := echoOnce(flow, []byte("after the failover")); err != nil {
		t.Fatalf("the direct flow opened before the kill broke: %v", err)
	}
	got, err := echoRoundTrip(tp.srcAddr("d"), []byte("new after failover"))
	if err != nil || string(got) != "new after failover" {
		t.Fatalf("new connection after the failover: %q, %v", got, err)
	}
	if !tp.src.hasLog("failing over") {
		t.Errorf("the source did not log its failover")
	}
}

func (p *proc) hasLog(s string) bool { return strings.Contains(p.out.String(), s) }

// TestRelayFailsOverToTheNextControl: a relay role with two control
// addresses moves to the second control when the first is killed, and the
// relayed flow it carries goes on meanwhile (the relay keeps its last
// authorization table while it reconnects).
func TestRelayFailsOverToTheNextControl(t *testing.T) {
	tp := newTopology(t, endpoint{name: "r", srcRoute: "relay", dstRoute: "relay"})
	var clients, relays [2]int
	var ctls [2]*proc
	for i, node := range []string{"ctl-a", "ctl-b"} {
		clients[i], relays[i] = freePort(t), freePort(t)
		ctls[i] = tp.connetd(t, node, "control", "--node-name", node, "--cert-file", "cert.pem", "--key-file", "key.pem",
			"--clients-addr", addr(clients[i]), "--relays-addr", addr(relays[i]),
			"--clients-tokens", "client-d-token,client-s-token", "--relays-tokens", "relay-token",
			"--store-dir", "store-"+node)
		ctls[i].waitLog(t, "control listening for clients", 10*time.Second)
	}
	relayStatus := freePort(t)
	tp.connetd(t, "relay", "relay", "--token", "relay-token", "--addr", addr(tp.relayPort), "--hostname", "127.0.0.1",
		"--control-addr", addr(relays[0])+","+addr(relays[1]), "--control-cas", "cert.pem", "--status-addr", addr(relayStatus))
	if _, v := waitControlNode(t, addr(relayStatus), "ctl-a", 10*time.Second); v.ControlAddr != addr(relays[0]) {
		t.Fatalf("relay control_addr %q, want %s", v.ControlAddr, addr(relays[0]))
	}

	for _, c := range []struct {
		file, token, table string
		status             int
		addr               string
	}{
		{"dst.toml", "client-d-token", "destinations", tp.dstStatus, addr(tp.echoPort)},
		{"src.toml", "client-s-token", "sources", tp.srcStatus, tp.srcAddr("r")},
	} {
		writeFile(t, tp.dir, c.file, fmt.Sprintf("log-level = \"debug\"\n[client]\ntoken = %q\nserver-addrs = [%q, %q]\nserver-cas = \"cert.pem\"\ndirect-addr = %q\nstatus-addr = %q\n\n[client.%s.r]\naddr = %q\nroute = \"relay\"\n",
			c.token, addr(clients[0]), addr(clients[1]), addr(freePort(t)), addr(c.status), c.table, c.addr))
	}
	tp.startEcho(t)
	tp.startClients(t)
	waitPath(t, addr(tp.srcStatus), "r", "relay", 15*time.Second)
	flow := openFlow(t, tp.srcAddr("r"))

	killed := time.Now()
	kill9(t, ctls[0])
	at, v := waitControlNode(t, addr(relayStatus), "ctl-b", 10*time.Second)
	took := at.Sub(killed)
	t.Logf("relay linked to ctl-b (%s) %s after the kill -9 of ctl-a", v.ControlAddr, took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("relay failover took %s, want ≤ 2s", took.Round(time.Millisecond))
	}
	waitControlNode(t, addr(tp.srcStatus), "ctl-b", 10*time.Second)
	for i := range 10 {
		if err := echoOnce(flow, []byte(fmt.Sprintf("during-%d", i))); err != nil {
			t.Fatalf("the relayed flow broke during the control failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got, err := echoRoundTrip(tp.srcAddr("r"), []byte("new via relay"))
	if err != nil || string(got) != "new via relay" {
		t.Fatalf("new relayed connection after the failover: %q, %v", got, err)
	}
}
