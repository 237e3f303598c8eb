package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/etcdtest"
)

// haCluster is three control nodes sharing one real etcd cluster, a relay
// linked to them, and clients: docs/ha.md, end to end.
type haCluster struct {
	tp     *topology
	etcd   *etcdtest.Cluster
	nodes  [3]*proc
	ports  [3]int // client ports of n1..n3
	status [3]int // status ports of n1..n3
}

var haNodes = [3]string{"n1", "n2", "n3"}

// list names the nodes' client addresses starting with node first.
func (h *haCluster) list(first int) string {
	var out []string
	for i := range 3 {
		out = append(out, fmt.Sprintf("%q", addr(h.ports[(first+i)%3])))
	}
	return "[" + strings.Join(out, ", ") + "]"
}

func startHA(t *testing.T, b *bus) *haCluster {
	t.Helper()
	h := &haCluster{etcd: etcdtest.Start(t, 3)}
	h.tp = newTopology(t, endpoint{name: "d", srcRoute: "direct", dstRoute: "direct"}, endpoint{name: "r", srcRoute: "relay", dstRoute: "relay"})
	h.tp.env = b.env()
	var eps []string
	for _, e := range h.etcd.Endpoints() {
		eps = append(eps, fmt.Sprintf("%q", e))
	}
	relays := [3]int{}
	for i, node := range haNodes {
		h.ports[i], relays[i], h.status[i] = freePort(t), freePort(t), freePort(t)
		writeFile(t, h.tp.dir, node+".toml", fmt.Sprintf(`log-level = "debug"
[control]
node-name = %q
cert-file = "cert.pem"
key-file = "key.pem"
clients-addr = %q
clients-tokens = ["client-d-token", "client-s-token", "client-x-token"]
relays-addr = %q
relays-tokens = ["relay-token"]
status-addr = %q
store-dir = "store-%s"
store = "etcd"
etcd-endpoints = [%s]
etcd-prefix = "/e2e-%d/"
`, node, addr(h.ports[i]), addr(relays[i]), addr(h.status[i]), node, strings.Join(eps, ", "), os.Getpid()))
		h.nodes[i] = h.tp.connetd(t, node, "control", "--config", node+".toml")
		h.nodes[i].waitLog(t, "control listening for clients", 10*time.Second)
	}
	for i := range 3 {
		waitCluster(t, h.status[i], func(c haClusterStatus) bool { return c.State == "ok" && len(c.Nodes) == 2 }, "n1..n3 see each other", 10*time.Second)
	}
	// One relay, linked to n1 first: killing n1 leaves the relay alive, so
	// a relayed flow through it can survive the loss of its control node.
	h.tp.connetd(t, "relay", "relay", "--token", "relay-token", "--addr", addr(h.tp.relayPort), "--hostname", "127.0.0.1",
		"--control-addr", addr(relays[0])+","+addr(relays[1])+","+addr(relays[2]), "--control-cas", "cert.pem")
	return h
}

// writeClient writes a client config whose control list starts at node first.
func (h *haCluster) writeClient(t *testing.T, file, token string, status, first int, body string) {
	writeFile(t, h.tp.dir, file, fmt.Sprintf("log-level = \"debug\"\n[client]\ntoken = %q\nserver-addrs = %s\nserver-cas = \"cert.pem\"\ndirect-addr = %q\nstatus-addr = %q\n%s",
		token, h.list(first), addr(freePort(t)), addr(status), body))
}

type haClusterStatus struct {
	Node          string `json:"node"`
	State         string `json:"state"`
	Error         string `json:"error"`
	RemoteClients int    `json:"remote_clients"`
	Nodes         []struct {
		Name    string `json:"name"`
		Clients int    `json:"clients"`
	} `json:"nodes"`
}

// haControlStatus is a control role's status (its fields at the top).
type haControlStatus struct {
	Clients []struct {
		ID string `json:"id"`
	} `json:"clients"`
	Cluster haClusterStatus `json:"cluster"`
}

func waitCluster(t *testing.T, port int, ok func(haClusterStatus) bool, what string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var st haControlStatus
	for time.Since(start) < d {
		st = haControlStatus{}
		if getJSON(addr(port), &st) == nil && ok(st.Cluster) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v; last cluster status %+v", what, d, st.Cluster)
	return 0
}

func controlClients(t *testing.T, port int) int {
	t.Helper()
	var st haControlStatus
	if err := getJSON(addr(port), &st); err != nil {
		t.Fatalf("control status: %v", err)
	}
	return len(st.Clients)
}

// streamEcho sends n random bytes through c in chunks while reading the
// echo back; it returns the longest wait for an echoed chunk and whether
// every byte came back intact. kill runs once, after a third was echoed.
func streamEcho(t *testing.T, c net.Conn, n int, kill func()) (time.Duration, bool) {
	t.Helper()
	payload := make([]byte, n)
	_, _ = rand.Read(payload)
	want := sha256.Sum256(payload)
	const chunk = 16 << 10
	errc := make(chan error, 1)
	go func() {
		for off := 0; off < n; off += chunk {
			if _, err := c.Write(payload[off:min(off+chunk, n)]); err != nil {
				errc <- err
				return
			}
			time.Sleep(20 * time.Millisecond) // a steady transfer, not a burst
		}
		errc <- nil
	}()
	h := sha256.New()
	buf := make([]byte, chunk)
	var got int
	var longest time.Duration
	last := time.Now()
	killed := false
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	for got < n {
		k, err := c.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			got += k
			longest = max(longest, time.Since(last))
			last = time.Now()
		}
		if !killed && got > n/3 {
			killed = true
			kill()
		}
		if err != nil {
			if err != io.EOF {
				t.Logf("stream read after %d of %d bytes: %v", got, n, err)
			}
			break
		}
	}
	if err := <-errc; err != nil {
		t.Logf("stream write: %v", err)
	}
	return longest, got == n && bytes.Equal(h.Sum(nil), want[:])
}

// TestControlClusterSurvivesLosingANodeAndEtcdMembers: three control nodes
// in etcd, a source on n1 and a destination on n2. A kill -9 of n1 during a
// relayed transfer leaves the transfer intact and moves the source to
// another node within 2 s; a token revoked on n3 cuts its client on n2
// within 1 s; one etcd member stopped changes nothing; two stopped make the
// nodes report read-only while flows go on.
func TestControlClusterSurvivesLosingANodeAndEtcdMembers(t *testing.T) {
	b := startBus(t)
	h := startHA(t, b)
	tp := h.tp
	var dstBody, srcBody strings.Builder
	for _, n := range tp.names() {
		fmt.Fprintf(&dstBody, "\n[client.destinations.%s]\naddr = %q\nroute = %q\n", n, addr(tp.echoPort), tp.routes[n][1])
		fmt.Fprintf(&srcBody, "\n[client.sources.%s]\naddr = %q\nroute = %q\n", n, tp.srcAddr(n), tp.routes[n][0])
	}
	h.writeClient(t, "dst.toml", "client-d-token", tp.dstStatus, 1, dstBody.String())
	h.writeClient(t, "src.toml", "client-s-token", tp.srcStatus, 0, srcBody.String())
	tp.startEcho(t)
	tp.startClients(t)
	waitControlNode(t, addr(tp.srcStatus), "n1", 10*time.Second)
	waitControlNode(t, addr(tp.dstStatus), "n2", 10*time.Second)
	// Source and destination are on different nodes: traffic direct and relayed.
	waitPath(t, addr(tp.srcStatus), "d", "direct", 15*time.Second)
	waitPath(t, addr(tp.srcStatus), "r", "relay", 15*time.Second)
	for _, n := range []string{"d", "r"} {
		if got, err := echoRoundTrip(tp.srcAddr(n), []byte("across nodes "+n)); err != nil || string(got) != "across nodes "+n {
			t.Fatalf("%s across nodes: %q, %v", n, got, err)
		}
	}

	// kill -9 of n1 (the source's node and the relay's) during a relayed transfer.
	flow, err := net.DialTimeout("tcp", tp.srcAddr("r"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer flow.Close()
	movedc := make(chan time.Duration, 1)
	stall, intact := streamEcho(t, flow, 3<<20, func() {
		kill9(t, h.nodes[0])
		go func() { movedc <- waitMoved(addr(tp.srcStatus), time.Now()) }()
	})
	if !intact {
		t.Fatal("the relayed transfer did not survive the kill -9 of its source's control node")
	}
	t.Logf("relayed 3 MiB transfer intact across the kill -9 of n1; longest wait for an echo %v", stall.Round(time.Millisecond))
	moved := <-movedc
	if moved < 0 {
		t.Fatal("the source never moved off n1")
	}
	t.Logf("source registered with another node %v after the kill -9", moved.Round(time.Millisecond))
	if moved > 2*time.Second {
		t.Errorf("the source took %v to move to another node, want ≤ 2s", moved.Round(time.Millisecond))
	}
	for _, n := range []string{"d", "r"} {
		if got, err := echoRoundTrip(tp.srcAddr(n), []byte("new after the kill "+n)); err != nil || string(got) != "new after the kill "+n {
			t.Fatalf("new %s connection after the kill: %q, %v", n, got, err)
		}
	}

	// A token revoked on n3 cuts its client on n2 within 1 s.
	xStatus := freePort(t)
	h.writeClient(t, "x.toml", "client-x-token", xStatus, 1, fmt.Sprintf("\n[client.destinations.x]\naddr = %q\n", addr(tp.echoPort)))
	tp.connetd(t, "x", "--config", "x.toml")
	waitControlNode(t, addr(xStatus), "n2", 10*time.Second)
	before := controlClients(t, h.status[1])
	if out, errOut, code := connetctl(t, b, "", "--instance", "n3", "tokens", "revoke", "client-x-token"); code != 0 {
		t.Fatalf("tokens revoke on n3: exit %d\n%s%s", code, out, errOut)
	}
	revoked := time.Now()
	for controlClients(t, h.status[1]) != before-1 {
		if time.Since(revoked) > 5*time.Second {
			t.Fatalf("n2 still has %d clients 5 s after the token was revoked on n3 (had %d)", controlClients(t, h.status[1]), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cut := time.Since(revoked)
	t.Logf("a token revoked on n3 cut its client on n2 %v later", cut.Round(time.Millisecond))
	if cut > time.Second {
		t.Errorf("revocation took %v to cut the client on another node, want ≤ 1s", cut.Round(time.Millisecond))
	}

	// One etcd member down: nothing visible changes.
	h.etcd.Members[2].Stop(t)
	time.Sleep(time.Second)
	for _, i := range []int{1, 2} {
		waitCluster(t, h.status[i], func(c haClusterStatus) bool { return c.State == "ok" }, haNodes[i]+" ok with one etcd member down", 5*time.Second)
	}
	if got, err := echoRoundTrip(tp.srcAddr("d"), []byte("one member down")); err != nil || string(got) != "one member down" {
		t.Fatalf("new connection with one etcd member down: %q, %v", got, err)
	}

	// Two down: no quorum. The nodes say read-only; flows are untouched.
	keep, err := net.DialTimeout("tcp", tp.srcAddr("d"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	h.etcd.Members[1].Stop(t)
	for _, i := range []int{1, 2} {
		d := waitCluster(t, h.status[i], func(c haClusterStatus) bool { return c.State == "read-only" }, haNodes[i]+" read-only without quorum", 15*time.Second)
		t.Logf("%s reported read-only %v after quorum was lost", haNodes[i], d.Round(time.Millisecond))
	}
	// systemctl status shows STATUS=, which connetctl status shows too.
	if out, errOut, code := connetctl(t, b, "", "--instance", "n2", "status"); code != 0 || !strings.Contains(out, "READ-ONLY: etcd unavailable") {
		t.Errorf("connetctl status of n2 without quorum: exit %d\n%s%s", code, out, errOut)
	}
	if err := echoOnce(keep, []byte("no quorum, flow untouched")); err != nil {
		t.Fatalf("an open flow broke when etcd lost quorum: %v", err)
	}
	if got, err := echoRoundTrip(tp.srcAddr("r"), []byte("no quorum, new relayed")); err != nil || string(got) != "no quorum, new relayed" {
		t.Fatalf("new relayed connection without quorum: %q, %v", got, err)
	}
}

// waitMoved is how long after killed the source's status first named a
// live node other than n1 (-1: not within 10 s).
func waitMoved(statusAddr string, killed time.Time) time.Duration {
	for time.Since(killed) < 10*time.Second {
		var v controlView
		if getJSON(statusAddr, &v) == nil && v.Control == "connected" && v.ControlNode != "" && v.ControlNode != "n1" {
			return time.Since(killed)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return -1
}
