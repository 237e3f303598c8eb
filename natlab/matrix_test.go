package natlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	payloadSize = 4 << 20
	// directWait bounds how long a pairing may take to go direct; hard↔hard
	// is expected to stay on the relay through it.
	directWait = 15 * time.Second
)

// pairing is one row of the matrix: a source at one site, a destination
// at another.
type pairing struct {
	name     string
	src, dst *site
	srcI     int // which client of the site
	dstI     int
	expect   string // "direct" or "relay"
	change   bool   // change the source's address mid-transfer
	survive  bool   // the transfer in flight must survive the change
	keepPath bool   // and so must its direct path (no new punch)
	mtu      int    // when set, the MTU of the source site's WAN link
}

// result is what the routers' counters said.
type result struct {
	route        string // direct, relay or mixed, from counters
	directBytes  int64
	serverBytes  int64
	timeToDirect time.Duration // -1: never direct within directWait (status)
	shaOK        bool
	note         string
}

// TestNATMatrix builds the lab once and runs every pairing of site kinds
// through the real daemon, judging the path from router packet counters.
func TestNATMatrix(t *testing.T) {
	start := time.Now()
	l, dir := labWithServer(t, `log-level = "debug"`)
	sum := payload(t, dir, "payload.bin", payloadSize)
	l.bigSum = payload(t, dir, "big.bin", 32<<20)
	for name, st := range l.sites {
		if st.mapProto != "" {
			protos := st.mapProto
			if protos == "pcp" {
				protos = "pcp,nat-pmp"
			}
			l.start(t, st.router, "natpmpd-"+name, dir, filepath.Join(binDir, "natpmpd"), "-protocols", protos,
				"-listen", fmt.Sprintf("10.%d.0.1", 100+st.n), "-lan", "lan", "-wan", "wan", "-external", st.public)
		}
	}

	kinds := allKinds
	var pairings []pairing
	for i, a := range kinds {
		for _, b := range kinds[i:] {
			expect := "direct"
			if a == kindHard && b == kindHard {
				expect = "relay"
			}
			pairings = append(pairings, pairing{name: a + "→" + b, src: l.sites[a+"1"], dst: l.sites[b+"2"], expect: expect})
		}
	}
	pairings = append(pairings,
		pairing{name: "same LAN (easy)", src: l.lan, dst: l.lan, srcI: 0, dstI: 1, expect: "direct"},
		// The dialer's connection follows its new address only where the
		// peer lets the new address in: a peer without NAT does, a peer
		// behind a NAT does not (the path is punched again). The transfer
		// in flight survives both: a resumable flow moves to the relay
		// and back.
		pairing{name: "easy→none, address change", src: l.sites["easy1"], dst: l.sites["none2"], expect: "direct", change: true, survive: true, keepPath: true},
		pairing{name: "easy→easy, address change", src: l.sites["easy1"], dst: l.sites["easy2"], expect: "direct", change: true, survive: true},
		// Relay frames carry the peers' packets plus a header: they must
		// still fit a small-MTU path without fragmentation.
		pairing{name: "hard→hard, 1280 MTU", src: l.sites["hard1"], dst: l.sites["hard2"], expect: "relay", mtu: 1280},
	)
	pairings = append(pairings, l.cgnatPairings()...)

	var matrix logBuf
	matrix.add("%-28s %-7s %-7s %12s %12s %10s %s", "pairing (source→dest)", "expect", "route", "direct B", "server B", "to direct", "sha256")
	pass, fail := 0, 0
	for _, p := range pairings {
		ran := false
		ok := t.Run(strings.NewReplacer("→", "_to_", " ", "_").Replace(p.name), func(t *testing.T) {
			ran = true
			r := l.runPairing(t, dir, p, sum)
			ttd, sha := ttdText(r.timeToDirect), shaText(r.shaOK)
			matrix.add("%-28s %-7s %-7s %12d %12d %10s %s %s", p.name, p.expect, r.route, r.directBytes, r.serverBytes, ttd, sha, r.note)
			if r.route != p.expect {
				t.Errorf("%s: data went %s (direct %d B, server %d B), want %s", p.name, r.route, r.directBytes, r.serverBytes, p.expect)
			}
			if !r.shaOK {
				t.Errorf("%s: payload sha256 mismatch", p.name)
			}
		})
		switch {
		case !ran:
		case ok:
			pass++
		default:
			fail++
		}
	}
	t.Logf("NAT lab matrix (route measured by router counters, %d MiB payload):\n%s", payloadSize>>20, matrix.String())
	fmt.Fprintf(os.Stdout, "NAT lab matrix:\n%s", matrix.String())
	fmt.Fprintf(os.Stdout, "NAT lab took %v\n", time.Since(start).Round(time.Second))
	fmt.Fprintf(os.Stdout, "natlab: %d passed, %d failed\n", pass, fail)
}

// clientConf is a client's config (token, server, status address) with
// extra (its endpoints) after it.
func clientConf(dir, extra string) string {
	return fmt.Sprintf(`log-level = "debug"
[client]
token = "tok"
server-addr = "%s:19190"
server-cas = %q
status-addr = "127.0.0.1:19182"
%s`, serverAddr, filepath.Join(dir, "cert.pem"), extra)
}

// waitDirect waits for the source in ns, started at started, to report a
// direct path to its first peer, or for bound. The source's word
// only sets the time to direct (-1: never); router counters decide a
// route.
func waitDirect(t *testing.T, ns string, started time.Time, bound time.Duration) (clientStatus, time.Duration) {
	t.Helper()
	var st clientStatus
	for time.Since(started) < bound {
		s, err := status(ns)
		if err == nil && len(s.Sources) > 0 && len(s.Sources[0].Peers) > 0 {
			st = s
			if s.Sources[0].Peers[0].Path == "direct" {
				return st, time.Since(started)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(st.Sources) == 0 || len(st.Sources[0].Peers) == 0 {
		t.Fatalf("the source never saw its destination")
	}
	return st, -1
}

// judgeRoute names the route of moved bytes of payload from the
// counters: direct or relay when at least that much crossed that way and
// less than a tenth of it the other, else mixed.
func judgeRoute(direct, server, moved int64) string {
	switch {
	case direct >= moved && server < moved/10:
		return "direct"
	case server >= moved && direct < moved/10:
		return "relay"
	}
	return "mixed"
}

func waitLog(t *testing.T, p *proc, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.output(), s) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not log %q within %s", p.name, s, timeout)
}

// accounting installs the counting rules of a pairing: where its direct
// traffic and its traffic with the server (relay and control) cross a
// router, with comments naming them.
func (l *lab) accounting(t *testing.T, p pairing) (ns string) {
	src, dst := p.src.public, p.dst.public
	ns = l.core
	if p.src == p.dst { // one LAN: its router's bridge sees the direct traffic
		ns = p.src.router
		src, dst = p.src.lanAddrs[p.srcI], p.dst.lanAddrs[p.dstI]
		l.w.in(ns, "sh", "-c", "iptables -w -N ACCT 2>/dev/null; iptables -w -C FORWARD -j ACCT 2>/dev/null || iptables -w -I FORWARD -j ACCT")
	}
	l.w.in(ns, "iptables", "-w", "-F", "ACCT")
	add := func(s, d, name string) {
		l.w.in(ns, "iptables", "-w", "-A", "ACCT", "-p", "udp", "-s", s, "-d", d, "-m", "comment", "--comment", name)
	}
	add(src, dst, "direct")
	add(dst, src, "direct")
	for _, a := range []string{src, dst} {
		add(a, serverAddr, "server")
		add(serverAddr, a, "server")
	}
	return ns
}

func (l *lab) runPairing(t *testing.T, dir string, p pairing, sum string) result {
	res := result{timeToDirect: -1}
	pdir := filepath.Join(dir, strings.NewReplacer("→", "-", " ", "-", ",", "", "(", "", ")", "").Replace(p.name))
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	client := func(extra string) string { return clientConf(dir, extra) }
	write(t, pdir, "dst.toml", client(fmt.Sprintf("[client.destinations.lab]\naddr = \"127.0.0.1:3000\"\nfile-server-root = %q\n", filepath.Join(dir, "www"))))
	write(t, pdir, "src.toml", client("[client.sources.lab]\naddr = \"127.0.0.1:8000\"\n"))
	if p.mtu > 0 {
		l.setWANMTU(t, p.src, p.mtu)
		defer l.setWANMTU(t, p.src, 1500)
	}
	countNS := l.accounting(t, p)
	l.flushConntrack(t, p)
	srcNS, dstNS := p.src.clients[p.srcI], p.dst.clients[p.dstI]
	bin := filepath.Join(binDir, "connetd")
	dst := l.start(t, dstNS, "connetd-dst", pdir, bin, "--config", filepath.Join(pdir, "dst.toml"))
	started := time.Now()
	src := l.start(t, srcNS, "connetd-src", pdir, bin, "--config", filepath.Join(pdir, "src.toml"))

	var st clientStatus
	st, res.timeToDirect = waitDirect(t, srcNS, started, directWait)
	if res.timeToDirect < 0 && p.expect == "direct" {
		l.dumpConntrack(t, p)
	}
	if p.change {
		l.changeDuringTransfer(t, p, srcNS, sum, &res)
	}
	// Zero the counters, move the payload, read the counters.
	l.w.in(countNS, "iptables", "-w", "-Z", "ACCT")
	got, n, err := fetch(srcNS, "payload.bin", 0, 60*time.Second)
	if err != nil {
		t.Errorf("transfer: %v after %d bytes", err, n)
	}
	res.shaOK = err == nil && got == sum
	c := l.counters(countNS, "filter", "ACCT")
	res.directBytes, res.serverBytes = c["direct"], c["server"]
	res.route = judgeRoute(res.directBytes, res.serverBytes, payloadSize)
	if s, err := status(srcNS); err == nil {
		st = s
	}
	pe := st.Sources[0].Peers[0]
	ds, _ := status(dstNS)
	res.note = fmt.Sprintf("nat %s/%s ttl %d/%d attempts %d pairs %d", st.NAT, ds.NAT, st.OpenTTL, ds.OpenTTL, pe.PunchAttempts, pe.PairsTried) + res.note
	if p.src.mapProto != "" || p.dst.mapProto != "" {
		l.checkPortMapping(t, p, st, ds, &res)
	}
	src.stop(t)
	dst.stop(t)
	for _, s := range []*site{p.src, p.dst} {
		if s.mapProto == "" {
			continue
		}
		if out := l.w.in(s.router, "iptables", "-w", "-t", "nat", "-S", "PREROUTING"); strings.Contains(out, "DNAT") {
			t.Errorf("the port mapping on %s survived the client's shutdown:\n%s", s.router, out)
		}
	}
	return res
}

// checkPortMapping checks that a client behind a mapping router got a
// mapping by the protocol that router serves, and that the router really
// forwards it.
func (l *lab) checkPortMapping(t *testing.T, p pairing, ss, ds clientStatus, res *result) {
	for _, e := range []struct {
		s  *site
		ns string
		st clientStatus
	}{{p.src, p.src.clients[p.srcI], ss}, {p.dst, p.dst.clients[p.dstI], ds}} {
		if e.s.mapProto == "" {
			continue
		}
		// UPnP discovery alone takes two seconds: the path may be direct
		// (punched) before the mapping exists.
		for deadline := time.Now().Add(10 * time.Second); e.st.PortMapping == "" && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			e.st, _ = status(e.ns)
		}
		if !strings.HasPrefix(e.st.PortMapping, e.s.mapProto+" ") {
			t.Errorf("client behind %s (serving %s) reports port mapping %q", e.s.router, e.s.mapProto, e.st.PortMapping)
			continue
		}
		rules := l.w.in(e.s.router, "iptables", "-w", "-t", "nat", "-S", "PREROUTING")
		if !strings.Contains(rules, "DNAT") {
			t.Errorf("status says %q but the router has no DNAT rule:\n%s", e.st.PortMapping, rules)
		}
		res.note += "; " + e.st.PortMapping
	}
}

// changeDuringTransfer starts a slow download, moves the source to a new
// LAN address in the middle of it, and then waits until the source is
// direct again. Where the QUIC connection cannot follow (the peer's NAT
// filters the new mapping), the download in flight moves to the relay and
// back to the new direct path (a resumable flow); new connections must
// work at once (relay) and go direct again.
func (l *lab) changeDuringTransfer(t *testing.T, p pairing, srcNS, sum string, res *result) {
	type outcome struct {
		sum string
		n   int64
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		// Larger than the path's buffers (QUIC windows, TCP socket
		// buffers), so most of it is still to cross when the address
		// changes: four seconds at 8 MiB/s.
		s, n, err := fetch(srcNS, "big.bin", 8<<20, 30*time.Second)
		done <- outcome{s, n, err}
	}()
	time.Sleep(700 * time.Millisecond)
	old := p.src.lanAddrs[p.srcI]
	l.moves++
	moved := fmt.Sprintf("%s.%d", old[:strings.LastIndex(old, ".")], 50+l.moves)
	changed := time.Now()
	l.w.in(srcNS, "ip", "addr", "add", moved+"/24", "dev", "eth0")
	l.w.in(srcNS, "ip", "addr", "del", old+"/24", "dev", "eth0")
	p.src.lanAddrs[p.srcI] = moved // the site keeps its new address
	o := <-done
	inflight := "in-flight transfer survived"
	if o.err != nil || o.sum != l.bigSum {
		inflight = fmt.Sprintf("in-flight transfer broke after %d B", o.n)
		if p.survive {
			t.Errorf("the transfer in flight did not survive the address change: %v after %d B", o.err, o.n)
		}
	}
	// A new connection right after the change must work (relay or direct).
	got, _, err := fetch(srcNS, "payload.bin", 0, 30*time.Second)
	if err != nil || got != sum {
		t.Errorf("a new connection after the address change failed: %v", err)
	}
	if p.keepPath && o.err == nil && o.sum == l.bigSum {
		res.note = "; in-flight transfer survived, direct path kept"
		return
	}
	back := time.Duration(-1)
	for time.Since(changed) < 30*time.Second {
		s, err := status(srcNS)
		if err == nil && len(s.Sources) > 0 && len(s.Sources[0].Peers) > 0 && s.Sources[0].Peers[0].Path == "direct" &&
			(p.keepPath || s.Sources[0].Peers[0].PunchAttempts > 1) {
			back = time.Since(changed)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if back < 0 {
		res.note = fmt.Sprintf("; %s; NOT direct again within 30s of the change", inflight)
		t.Errorf("not direct again within 30s of the address change")
		return
	}
	res.note = fmt.Sprintf("; %s; direct again %v after the change", inflight, back.Round(10*time.Millisecond))
}

// dumpConntrack logs the routers' UDP conntrack tables, which show why a
// punch failed (e.g. an entry that took the pair's tuple).
func (l *lab) dumpConntrack(t *testing.T, p pairing) {
	if _, err := exec.LookPath("conntrack"); err != nil {
		return
	}
	for _, s := range []*site{p.src, p.dst} {
		for _, r := range []string{s.router, s.cgn} {
			if r != "" {
				out, _ := exec.Command("ip", "netns", "exec", r, "conntrack", "-L", "-p", "udp").CombinedOutput()
				t.Logf("conntrack of %s:\n%s", r, out)
			}
		}
	}
}

// setWANMTU sets the MTU of both ends of a site's WAN link.
func (l *lab) setWANMTU(t *testing.T, st *site, mtu int) {
	t.Helper()
	ns := st.router
	if ns == "" {
		ns = st.clients[0]
	}
	l.w.in(ns, "ip", "link", "set", "dev", "wan", "mtu", fmt.Sprint(mtu))
	l.w.in(l.core, "ip", "link", "set", "dev", fmt.Sprintf("s%d", st.n), "mtu", fmt.Sprint(mtu))
}

// labWithServer builds a lab in a new directory, which it returns, and
// starts its server with head (see startServer).
func labWithServer(t *testing.T, head string) (*lab, string) {
	t.Helper()
	needRoot(t)
	start := time.Now()
	dir := t.TempDir()
	l := buildLab(t, binDir)
	writeCert(t, dir)
	t.Logf("lab built in %v", time.Since(start).Round(time.Millisecond))
	l.startServer(t, dir, head)
	return l, dir
}

// startServer runs connetd server (control and relay, token "tok") on the
// lab's server host, with head before its [server] table, and waits until
// it serves clients.
func (l *lab) startServer(t *testing.T, dir, head string) {
	t.Helper()
	write(t, dir, "server.toml", fmt.Sprintf(`%s
[server]
tokens = ["tok"]
cert-file = "cert.pem"
key-file = "key.pem"
relay-hostname = %q
store-dir = %q
`, head, serverAddr, filepath.Join(dir, "store")))
	l.srv = l.start(t, l.server, "connetd-server", dir, filepath.Join(binDir, "connetd"), "--config", filepath.Join(dir, "server.toml"))
	waitLog(t, l.srv, "control listening for clients", 10*time.Second)
}
