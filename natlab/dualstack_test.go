package natlab

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/testenv"
)

// The dual-stack lab: sites with IPv4 behind the usual NATs and public
// IPv6 behind a stateful firewall, as many home and mobile networks are.
// IPv6 uses documentation prefixes, which exist only inside the lab's
// namespaces: 2001:db8:200:N::/64 on the WAN link of site N (core ::1,
// router ::2) and 2001:db8:N::/64 on its LAN, routed through the core.
// There is no NAT66: the routers only filter, like home routers (the LAN
// may go out, answers come in, nothing new comes in). The server stays
// IPv4-only: clients reach control and relay over IPv4, and the NAT kind
// they measure is their IPv4 NAT's.

// dualPairing is one row of TestNATDualStack.
type dualPairing struct {
	name           string
	src, dst       *site
	expect, family string // route, and the direct path's family
}

func v6WAN(n int) (core, site string) {
	return fmt.Sprintf("2001:db8:200:%d::1", n), fmt.Sprintf("2001:db8:200:%d::2", n)
}

// v6Client is the IPv6 address of the client of site n.
func v6Client(n int) string { return fmt.Sprintf("2001:db8:%d::10", n) }

// buildDualStackLab builds a small lab of its own: the core, the server
// and one dual-stack site of each given kind, numbered from 2 and named
// by kind and count (easy1, easy2).
func buildDualStackLab(t *testing.T, kinds ...string) *lab {
	testenv6(t)
	w := newWorld(t)
	l := &lab{w: w, sites: map[string]*site{}, bins: binDir}
	l.core = w.ns(coreNS)
	w.sysctl(l.core, "net.ipv4.ip_forward=1")
	w.sysctl(l.core, "net.ipv6.conf.all.forwarding=1")
	for _, ipt := range []string{"iptables", "ip6tables"} {
		w.in(l.core, ipt, "-w", "-N", "ACCT")
		w.in(l.core, ipt, "-w", "-A", "FORWARD", "-j", "ACCT")
	}
	l.server = w.ns("srv")
	c, s := l.wan(1)
	w.link(l.core, "s1", c, l.server, "wan", s)
	w.in(l.server, "ip", "route", "add", "default", "via", "10.200.1.1")
	seen := map[string]int{}
	for i, kind := range kinds {
		st := l.addSite(kind, 2+i, 1, false)
		l.addIPv6(st)
		seen[kind]++
		l.sites[fmt.Sprintf("%s%d", kind, seen[kind])] = st
	}
	l.waitDAD(t)
	return l
}

// waitDAD waits until no namespace of the lab has a tentative IPv6 address
// left: the link-local addresses of new links go through duplicate address
// detection for a second or two, and until then neighbour discovery on
// those links can stall the first packets of an attempt.
func (l *lab) waitDAD(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, ns := range l.w.nss {
		for strings.TrimSpace(l.w.in(ns, "ip", "-6", "addr", "show", "tentative")) != "" {
			if time.Now().After(deadline) {
				t.Fatalf("tentative IPv6 addresses in %s after 10s:\n%s", ns, l.w.in(ns, "ip", "-6", "addr", "show", "tentative"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// testenv6 skips where the dual-stack lab cannot be built.
func testenv6(t *testing.T) {
	t.Helper()
	needRoot(t)
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		t.Skip("IPv6 is disabled in this kernel")
	}
	testenv.RequireTool(t, "ip6tables", "iptables")
	if out, err := exec.Command("ip6tables", "-w", "-L", "-n").CombinedOutput(); err != nil {
		t.Skipf("ip6tables does not work here: %v: %s", err, out)
	}
}

// addIPv6 gives a NAT site public IPv6 behind a stateful firewall on its
// router. Addresses skip duplicate address detection: a tentative address
// is no candidate, and the lab must not wait for it.
func (l *lab) addIPv6(st *site) {
	w, r, n := l.w, st.router, st.n
	core, wan := v6WAN(n)
	w.in(l.core, "ip", "-6", "addr", "add", core+"/64", "dev", fmt.Sprintf("s%d", n), "nodad")
	w.in(l.core, "ip", "-6", "route", "add", fmt.Sprintf("2001:db8:%d::/64", n), "via", wan)
	w.sysctl(r, "net.ipv6.conf.all.forwarding=1")
	w.in(r, "ip", "-6", "addr", "add", wan+"/64", "dev", "wan", "nodad")
	w.in(r, "ip", "-6", "route", "add", "default", "via", core)
	w.in(r, "ip", "-6", "addr", "add", fmt.Sprintf("2001:db8:%d::1/64", n), "dev", "lan", "nodad")
	cl := st.clients[0]
	w.in(cl, "ip", "-6", "addr", "add", v6Client(n)+"/64", "dev", "eth0", "nodad")
	w.in(cl, "ip", "-6", "route", "add", "default", "via", fmt.Sprintf("2001:db8:%d::1", n))
	ipt := func(args ...string) { w.in(r, append([]string{"ip6tables", "-w"}, args...)...) }
	ipt("-P", "FORWARD", "DROP")
	ipt("-A", "FORWARD", "-i", "lan", "-j", "ACCEPT")
	ipt("-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
}

// TestNATDualStack runs dual-stack pairings: both families work between
// two easy NATs (equal RTTs in the lab: a tie, which IPv6 wins); between
// two hard NATs only IPv6 can be punched (IPv4 alone would be relayed).
// The core's IPv4 and IPv6 counters decide route and family. It builds a
// lab of its own, so it runs alone.
func TestNATDualStack(t *testing.T) {
	start := time.Now()
	l := buildDualStackLab(t, kindEasy, kindEasy, kindHard, kindHard)
	dir := t.TempDir()
	writeCert(t, dir)
	l.startServer(t, dir, `log-level = "debug"`)
	sum := payload(t, dir, "payload.bin", payloadSize)
	pairings := []dualPairing{
		{name: "dual easy→easy", src: l.sites["easy1"], dst: l.sites["easy2"], expect: "direct", family: "ipv6"},
		{name: "dual hard→hard", src: l.sites["hard1"], dst: l.sites["hard2"], expect: "direct", family: "ipv6"},
	}
	var matrix logBuf
	matrix.add("%-16s %-7s %-7s %-6s %12s %12s %12s %10s %s", "pairing", "expect", "route", "family", "direct4 B", "direct6 B", "server B", "to direct", "sha256")
	for _, p := range pairings {
		t.Run(strings.NewReplacer("→", "_to_", " ", "_").Replace(p.name), func(t *testing.T) {
			r := l.runDualPairing(t, dir, p, sum)
			ttd, sha := ttdText(r.timeToDirect), shaText(r.shaOK)
			matrix.add("%-16s %-7s %-7s %-6s %12d %12d %12d %10s %s %s", p.name, p.expect, r.route, r.family, r.direct4, r.direct6, r.serverBytes, ttd, sha, r.note)
			if r.route != p.expect || r.family != p.family {
				t.Errorf("%s: data went %s over %s (direct IPv4 %d B, IPv6 %d B, server %d B), want %s over %s",
					p.name, r.route, r.family, r.direct4, r.direct6, r.serverBytes, p.expect, p.family)
			}
			if !r.shaOK {
				t.Errorf("%s: payload sha256 mismatch", p.name)
			}
		})
	}
	t.Logf("dual-stack NAT lab (route and family from the core's counters, %d MiB payload):\n%s", payloadSize>>20, matrix.String())
	fmt.Fprintf(os.Stdout, "dual-stack NAT lab:\n%sdual-stack NAT lab took %v\n", matrix.String(), time.Since(start).Round(time.Second))
}

// dualResult is what the core's counters and the source's status said.
type dualResult struct {
	route, family    string
	direct4, direct6 int64
	serverBytes      int64
	timeToDirect     time.Duration
	shaOK            bool
	note             string
}

// peerPath is the source's view of its peer's path, from its status.
type peerPath struct {
	Path, Remote, Family, NAT string
	Attempts                  int `json:"punch_attempts"`
}

func sourcePath(ns string) (peerPath, error) {
	var st struct {
		NAT     string `json:"nat"`
		Sources []struct {
			Peers []struct {
				Path     string `json:"path"`
				Remote   string `json:"remote"`
				Family   string `json:"family"`
				Attempts int    `json:"punch_attempts"`
			} `json:"peers"`
		} `json:"sources"`
	}
	resp, err := httpIn(ns, 2*time.Second).Get("http://127.0.0.1:19182/")
	if err != nil {
		return peerPath{}, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return peerPath{}, fmt.Errorf("decode status: %w", err)
	}
	if len(st.Sources) == 0 || len(st.Sources[0].Peers) == 0 {
		return peerPath{NAT: st.NAT}, nil
	}
	pe := st.Sources[0].Peers[0]
	return peerPath{Path: pe.Path, Remote: pe.Remote, Family: pe.Family, NAT: st.NAT, Attempts: pe.Attempts}, nil
}

// dualAccounting counts a pairing's traffic on the core: direct over
// IPv4 (between the sites' public addresses), direct over IPv6 (between
// the clients), and each site's traffic with the server.
func (l *lab) dualAccounting(p dualPairing) {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		l.w.in(l.core, ipt, "-w", "-F", "ACCT")
	}
	add := func(ipt, s, d, name string) {
		l.w.in(l.core, ipt, "-w", "-A", "ACCT", "-p", "udp", "-s", s, "-d", d, "-m", "comment", "--comment", name)
	}
	src, dst := p.src.public, p.dst.public
	add("iptables", src, dst, "direct4")
	add("iptables", dst, src, "direct4")
	for _, a := range []string{src, dst} {
		add("iptables", a, serverAddr, "server")
		add("iptables", serverAddr, a, "server")
	}
	src6, dst6 := v6Client(p.src.n), v6Client(p.dst.n)
	add("ip6tables", src6, dst6, "direct6")
	add("ip6tables", dst6, src6, "direct6")
}

func (l *lab) runDualPairing(t *testing.T, dir string, p dualPairing, sum string) dualResult {
	res := dualResult{timeToDirect: -1}
	pdir := filepath.Join(dir, strings.NewReplacer("→", "-", " ", "-").Replace(p.name))
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, pdir, "dst.toml", clientConf(dir, fmt.Sprintf("[client.destinations.lab]\naddr = \"127.0.0.1:3000\"\nfile-server-root = %q\n", filepath.Join(dir, "www"))))
	write(t, pdir, "src.toml", clientConf(dir, "[client.sources.lab]\naddr = \"127.0.0.1:8000\"\n"))
	l.dualAccounting(p)
	srcNS, dstNS := p.src.clients[0], p.dst.clients[0]
	bin := filepath.Join(binDir, "connetd")
	dstP := l.start(t, dstNS, "connetd-dst", pdir, bin, "--config", filepath.Join(pdir, "dst.toml"))
	defer dstP.stop(t)
	started := time.Now()
	srcP := l.start(t, srcNS, "connetd-src", pdir, bin, "--config", filepath.Join(pdir, "src.toml"))
	defer srcP.stop(t)
	var pp peerPath
	for time.Since(started) < directWait {
		if got, err := sourcePath(srcNS); err == nil && got.Path == "direct" {
			pp, res.timeToDirect = got, time.Since(started)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Zero the counters, move the payload, read the counters.
	for _, ipt := range []string{"iptables", "ip6tables"} {
		l.w.in(l.core, ipt, "-w", "-Z", "ACCT")
	}
	got, n, err := fetch(srcNS, "payload.bin", 0, 60*time.Second)
	if err != nil {
		t.Errorf("transfer: %v after %d bytes", err, n)
	}
	res.shaOK = err == nil && got == sum
	c4, c6 := l.counters(l.core, "filter", "ACCT"), l.countersOf("ip6tables", l.core, "filter", "ACCT")
	res.direct4, res.direct6, res.serverBytes = c4["direct4"], c6["direct6"], c4["server"]
	res.route = judgeRoute(res.direct4+res.direct6, res.serverBytes, payloadSize)
	res.family = "-"
	switch {
	case res.route != "direct":
	case res.direct6 >= payloadSize && res.direct4 < payloadSize/10:
		res.family = "ipv6"
	case res.direct4 >= payloadSize && res.direct6 < payloadSize/10:
		res.family = "ipv4"
	default:
		res.family = "mixed"
	}
	if now, err := sourcePath(srcNS); err == nil {
		pp = now
	}
	// The status must name what the counters saw.
	if res.family == "ipv6" && (pp.Family != "ipv6" || !strings.Contains(pp.Remote, v6Client(p.dst.n))) {
		t.Errorf("the source's status says path %s family %q remote %q; the counters saw IPv6 to %s", pp.Path, pp.Family, pp.Remote, v6Client(p.dst.n))
	}
	res.note = fmt.Sprintf("nat %s attempts %d remote %s", pp.NAT, pp.Attempts, pp.Remote)
	return res
}
