package natlab

import "fmt"

// Carrier-grade NAT sites: a client behind a home NAT (easy) whose WAN is
// the carrier's shared address space (100.64.0.0/10), behind the carrier's
// NAT, which is easy (port-preserving) or hard (a new port per
// destination). The outermost NAT is the second hop, so a punch's opening
// packets need TTL 3 to leave it (traversal/natdepth.go finds that out).
const (
	kindCGNATEasy = "cgnat-easy"
	kindCGNATHard = "cgnat-hard"
)

var cgnatKinds = []string{kindCGNATEasy, kindCGNATHard}

// addCGNATSite builds the core ↔ carrier NAT ↔ home NAT ↔ client chain of
// site n. st.router is the home router, st.cgn the carrier's.
func (l *lab) addCGNATSite(kind string, n int) *site {
	w := l.w
	st := &site{kind: kind, n: n, public: fmt.Sprintf("10.200.%d.2", n)}
	c, s := l.wan(n)
	st.cgn = w.ns(fmt.Sprintf("g%d", n))
	w.link(l.core, fmt.Sprintf("s%d", n), c, st.cgn, "wan", s)
	w.in(st.cgn, "ip", "route", "add", "default", "via", fmt.Sprintf("10.200.%d.1", n))
	w.sysctl(st.cgn, "net.ipv4.ip_forward=1")
	shared := fmt.Sprintf("100.64.%d", n)

	st.router = w.ns(fmt.Sprintf("r%d", n))
	w.link(st.cgn, "in", shared+".1/24", st.router, "wan", shared+".2/24")
	w.in(st.router, "ip", "route", "add", "default", "via", shared+".1")
	w.sysctl(st.router, "net.ipv4.ip_forward=1")
	lanNet := fmt.Sprintf("10.%d.0", 100+n)
	ns := w.ns(fmt.Sprintf("c%d-0", n))
	addr := lanNet + ".10"
	w.link(st.router, "lan", lanNet+".1/24", ns, "eth0", addr+"/24")
	w.in(ns, "ip", "route", "add", "default", "via", lanNet+".1")
	st.clients, st.lanAddrs = []string{ns}, []string{addr}

	nat := func(router, inside string, hard bool) {
		ipt := func(args ...string) { w.in(router, append([]string{"iptables", "-w"}, args...)...) }
		ipt("-P", "FORWARD", "DROP")
		ipt("-A", "FORWARD", "-i", inside, "-j", "ACCEPT")
		ipt("-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		masq := []string{"-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"}
		if hard {
			masq = append(masq, "--random-fully")
		}
		ipt(masq...)
	}
	nat(st.router, "lan", false)
	nat(st.cgn, "in", kind == kindCGNATHard)
	return st
}

// cgnatPairings are the rows with a CGNAT site: each CGNAT kind with the
// one-level kinds and with each other. Direct unless both sides are hard
// at their outermost NAT.
func (l *lab) cgnatPairings() []pairing {
	var out []pairing
	hardOutside := func(kind string) bool { return kind == kindHard || kind == kindCGNATHard }
	for i, a := range cgnatKinds {
		for _, b := range []string{kindNone, kindEasy, kindHard} {
			expect := "direct"
			if hardOutside(a) && hardOutside(b) {
				expect = "relay"
			}
			out = append(out, pairing{name: a + "→" + b, src: l.sites[a+"1"], dst: l.sites[b+"2"], expect: expect})
		}
		for _, b := range cgnatKinds[i:] {
			expect := "direct"
			if hardOutside(a) && hardOutside(b) {
				expect = "relay"
			}
			out = append(out, pairing{name: a + "→" + b, src: l.sites[a+"1"], dst: l.sites[b+"2"], expect: expect})
		}
	}
	return out
}
