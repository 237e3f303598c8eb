package natlab

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// The lab's internet: a core router namespace with one /24 link per site,
// 10.200.N.1 (core) — 10.200.N.2 (the site's public address). Sites are
// the server, NAT routers with a private LAN behind them, a firewall with a
// routed public LAN, and hosts with no NAT at all. Because the core is a
// router of its own, a packet from one site to another crosses three
// routers, as on the internet: a TTL-2 opening packet leaves its own NAT
// and dies at the core. No address here exists outside the lab's
// namespaces.
const (
	serverAddr = "10.200.1.2"
	coreNS     = "core"
)

// Kinds of site.
const (
	kindNone     = "none"     // the client has a public address
	kindEasy     = "easy"     // MASQUERADE: port-preserving, endpoint-independent mapping
	kindHard     = "hard"     // MASQUERADE --random-fully: a new port per destination
	kindFirewall = "firewall" // stateful firewall without NAT
	kindPMP      = "pmp"      // hard NAT whose router grants NAT-PMP (site 1) or PCP (site 2) mappings
	kindUPnP     = "upnp"     // hard NAT whose router is a UPnP internet gateway device
)

var allKinds = []string{kindNone, kindEasy, kindHard, kindFirewall, kindPMP, kindUPnP}

// site is a place a client can run.
type site struct {
	kind     string
	n        int    // site number: WAN 10.200.n.2
	router   string // namespace of the router, "" for kind none
	clients  []string
	public   string   // the address its traffic has on the core
	lanAddrs []string // the clients' own addresses
	mapProto string   // the port mapping protocol its router serves
	cgn      string   // the carrier NAT's namespace of a CGNAT site (cgnat_test.go)
}

// lab is the whole topology.
type lab struct {
	w      *world
	core   string
	server string
	sites  map[string]*site // by name, e.g. "easy1"
	lan    *site            // two clients on one bridged LAN behind one NAT
	bins   string
	bigSum string // sha256 of the large payload of the address-change rows
	moves  int    // address changes so far
	srv    *proc  // the server (control and relay), once started
}

func (l *lab) wan(n int) (core, site string) {
	return fmt.Sprintf("10.200.%d.1/24", n), fmt.Sprintf("10.200.%d.2/24", n)
}

func buildLab(t *testing.T, bins string) *lab {
	w := newWorld(t)
	l := &lab{w: w, sites: map[string]*site{}, bins: bins}
	l.core = w.ns(coreNS)
	w.sysctl(l.core, "net.ipv4.ip_forward=1")
	// Every forwarded packet passes an accounting chain whose per-pair
	// rules the scenarios add and read.
	w.in(l.core, "iptables", "-w", "-N", "ACCT")
	w.in(l.core, "iptables", "-w", "-A", "FORWARD", "-j", "ACCT")

	l.server = w.ns("srv")
	c, s := l.wan(1)
	w.link(l.core, "s1", c, l.server, "wan", s)
	w.in(l.server, "ip", "route", "add", "default", "via", "10.200.1.1")

	n := 2
	for _, kind := range allKinds {
		for i := 1; i <= 2; i++ {
			st := l.addSite(kind, n, 1, false)
			switch {
			case kind == kindPMP && i == 1:
				st.mapProto = "nat-pmp"
			case kind == kindPMP:
				st.mapProto = "pcp"
			case kind == kindUPnP:
				st.mapProto = "upnp"
			}
			l.sites[fmt.Sprintf("%s%d", kind, i)] = st
			n++
		}
	}
	l.lan = l.addSite(kindEasy, n, 2, true)
	n++
	for _, kind := range cgnatKinds {
		for i := 1; i <= 2; i++ {
			l.sites[fmt.Sprintf("%s%d", kind, i)] = l.addCGNATSite(kind, n)
			n++
		}
	}
	return l
}

// addSite builds one site: its WAN link to the core, and for router kinds
// the router and its clients.
func (l *lab) addSite(kind string, n, clients int, bridged bool) *site {
	w := l.w
	st := &site{kind: kind, n: n, public: fmt.Sprintf("10.200.%d.2", n)}
	c, s := l.wan(n)
	if kind == kindNone {
		ns := w.ns(fmt.Sprintf("c%d", n))
		w.link(l.core, fmt.Sprintf("s%d", n), c, ns, "wan", s)
		w.in(ns, "ip", "route", "add", "default", "via", fmt.Sprintf("10.200.%d.1", n))
		st.clients, st.lanAddrs = []string{ns}, []string{st.public}
		return st
	}
	st.router = w.ns(fmt.Sprintf("r%d", n))
	r := st.router
	w.link(l.core, fmt.Sprintf("s%d", n), c, r, "wan", s)
	w.in(r, "ip", "route", "add", "default", "via", fmt.Sprintf("10.200.%d.1", n))
	w.sysctl(r, "net.ipv4.ip_forward=1")
	lanNet := fmt.Sprintf("10.%d.0", 100+n)
	if bridged {
		w.in(r, "ip", "link", "add", "lan", "type", "bridge")
		w.in(r, "ip", "addr", "add", lanNet+".1/24", "dev", "lan")
		w.in(r, "ip", "link", "set", "lan", "up")
		// Bridged packets pass iptables too, so the router's counters see
		// LAN-to-LAN traffic.
		w.sysctl(r, "net.bridge.bridge-nf-call-iptables=1")
	}
	for i := range clients {
		ns := w.ns(fmt.Sprintf("c%d-%d", n, i))
		addr := fmt.Sprintf("%s.%d", lanNet, 10+i)
		if bridged {
			w.link(r, fmt.Sprintf("p%d", i), "", ns, "eth0", addr+"/24")
			w.in(r, "ip", "link", "set", fmt.Sprintf("p%d", i), "master", "lan")
		} else {
			w.link(r, "lan", lanNet+".1/24", ns, "eth0", addr+"/24")
		}
		w.in(ns, "ip", "route", "add", "default", "via", lanNet+".1")
		// An address change keeps the default route: a secondary address
		// takes over when the primary goes.
		w.sysctl(ns, "net.ipv4.conf.all.promote_secondaries=1")
		w.sysctl(ns, "net.ipv4.conf.eth0.promote_secondaries=1")
		st.clients = append(st.clients, ns)
		st.lanAddrs = append(st.lanAddrs, addr)
	}
	ipt := func(args ...string) { w.in(r, append([]string{"iptables", "-w"}, args...)...) }
	// A router's filter: the LAN may go out, answers and port mappings may
	// come in, nothing else is forwarded inward.
	ipt("-P", "FORWARD", "DROP")
	ipt("-A", "FORWARD", "-i", "lan", "-j", "ACCEPT")
	ipt("-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED,DNAT", "-j", "ACCEPT")
	switch kind {
	case kindEasy:
		ipt("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
	case kindHard, kindPMP, kindUPnP:
		ipt("-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE", "--random-fully")
	case kindFirewall:
		// No NAT: the LAN is public and routed by the core.
		w.in(l.core, "ip", "route", "add", lanNet+".0/24", "via", st.public)
		st.public = st.lanAddrs[0]
	}
	return st
}

// counters reads the byte counters of an IPv4 chain, by rule comment.
func (l *lab) counters(ns, table, chain string) map[string]int64 {
	return l.countersOf("iptables", ns, table, chain)
}

// countersOf is counters for iptables or ip6tables.
func (l *lab) countersOf(tool, ns, table, chain string) map[string]int64 {
	out := l.w.in(ns, tool, "-w", "-t", table, "-L", chain, "-v", "-x", "-n")
	got := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		i := strings.Index(sc.Text(), "/* ")
		if len(f) < 2 || i < 0 {
			continue
		}
		name := strings.TrimSuffix(strings.TrimSpace(sc.Text()[i+3:]), " */")
		b, err := strconv.ParseInt(f[1], 10, 64)
		if err == nil {
			got[name] += b
		}
	}
	return got
}
