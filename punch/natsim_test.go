package punch

import (
	"math/rand/v2"
	"net/netip"
	"sync"
)

// simNet is a small in-process model of hosts, NAT routers and the
// internet between them, faithful to what matters for hole punching on
// Linux: TTL is decremented at every router and a packet dies at zero
// before it is translated; a router maps ports endpoint-independently and
// port-preserving (MASQUERADE) or randomly per destination (MASQUERADE
// --random-fully); filtering is address-and-port dependent; and an
// unsolicited packet to the router's own address leaves a conntrack entry
// that takes that address pair, so a later outbound packet on the same pair
// is given another port. Routers reach each other through one core hop.
type simNet struct {
	mu      sync.Mutex
	rng     *rand.Rand
	public  map[netip.Addr]*simHost   // hosts on the internet (no NAT, no firewall)
	routers map[netip.Addr]*simRouter // by public address; a firewall also by its hosts' addresses
	packets int                       // every datagram sent
}

type simRouter struct {
	pub      netip.Addr
	kind     string // "easy", "hard" or "firewall"
	inside   map[netip.Addr]*simHost
	entries  []*ctEntry
	forwards map[uint16]netip.AddrPort // port mappings (DNAT)
}

// ctEntry is a conntrack entry: the original tuple and the expected reply.
type ctEntry struct {
	origSrc, origDst   netip.AddrPort
	replySrc, replyDst netip.AddrPort
	local              bool // delivered to the router itself: nothing behind it
}

type simHost struct {
	ip     netip.Addr
	router *simRouter
	socks  map[uint16]*simSock
}

type simSock struct {
	net     *simNet
	host    *simHost
	port    uint16
	handler func(s *simSock, from netip.AddrPort, b []byte)
}

func newSimNet(seed uint64) *simNet {
	return &simNet{rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), public: map[netip.Addr]*simHost{}, routers: map[netip.Addr]*simRouter{}}
}

func (n *simNet) router(pub, kind string) *simRouter {
	r := &simRouter{pub: netip.MustParseAddr(pub), kind: kind, inside: map[netip.Addr]*simHost{}, forwards: map[uint16]netip.AddrPort{}}
	n.routers[r.pub] = r
	return r
}

func (n *simNet) host(ip string, r *simRouter) *simHost {
	h := &simHost{ip: netip.MustParseAddr(ip), router: r, socks: map[uint16]*simSock{}}
	if r == nil {
		n.public[h.ip] = h
	} else {
		r.inside[h.ip] = h
		if r.kind == "firewall" {
			n.routers[h.ip] = r
		}
	}
	return h
}

func (n *simNet) listen(h *simHost, port uint16) *simSock {
	n.mu.Lock()
	defer n.mu.Unlock()
	for port == 0 || h.socks[port] != nil {
		port = uint16(1024 + n.rng.IntN(60000))
	}
	s := &simSock{net: n, host: h, port: port}
	h.socks[port] = s
	return s
}

func (s *simSock) addr() netip.AddrPort { return netip.AddrPortFrom(s.host.ip, s.port) }

type delivery struct {
	to   *simSock
	from netip.AddrPort
}

// WriteTo implements Conn.
func (s *simSock) WriteTo(b []byte, to netip.AddrPort, ttl int) error {
	if ttl <= 0 {
		ttl = 64
	}
	n := s.net
	n.mu.Lock()
	n.packets++
	d := n.route(s.host, s.addr(), to, ttl)
	n.mu.Unlock()
	if d.to != nil && d.to.handler != nil {
		d.to.handler(d.to, d.from, append([]byte(nil), b...))
	}
	return nil
}

func (n *simNet) route(h *simHost, src, dst netip.AddrPort, ttl int) delivery {
	r := h.router
	if r != nil {
		if in := r.inside[dst.Addr()]; in != nil {
			return delivery{in.socks[dst.Port()], src} // same LAN
		}
		if dst.Addr() == r.pub {
			return delivery{} // no hairpinning
		}
		ttl-- // the router forwards
		if ttl <= 0 {
			return delivery{} // dropped before conntrack confirms or NAT translates
		}
		src = r.outbound(n, src, dst)
	}
	ttl-- // the core hop
	if ttl <= 0 {
		return delivery{}
	}
	return n.inbound(src, dst, ttl)
}

func (r *simRouter) outbound(n *simNet, src, dst netip.AddrPort) netip.AddrPort {
	for _, e := range r.entries {
		if e.origSrc == src && e.origDst == dst {
			return e.replyDst
		}
		if e.replySrc == src && e.replyDst == dst {
			return e.origDst
		}
	}
	if r.kind == "firewall" {
		r.entries = append(r.entries, &ctEntry{origSrc: src, origDst: dst, replySrc: dst, replyDst: src})
		return src
	}
	taken := func(p uint16) bool {
		pub := netip.AddrPortFrom(r.pub, p)
		for _, e := range r.entries {
			if (e.replySrc == dst && e.replyDst == pub) || (e.origSrc == dst && e.origDst == pub) {
				return true
			}
		}
		return false
	}
	port := src.Port()
	// Linux reuses an existing mapping of the same source (any
	// destination) if it is free toward this one, the most recent first
	// (its by-source hash chain adds at the head): a port that was once
	// moved stays moved for new destinations too.
	for i := len(r.entries) - 1; i >= 0; i-- {
		e := r.entries[i]
		if e.origSrc == src && !e.local && !taken(e.replyDst.Port()) && r.kind != "hard" {
			port = e.replyDst.Port()
			break
		}
	}
	if r.kind == "hard" || taken(port) {
		for port = uint16(1024 + n.rng.IntN(64512)); taken(port); port = uint16(1024 + n.rng.IntN(64512)) {
		}
	}
	pub := netip.AddrPortFrom(r.pub, port)
	r.entries = append(r.entries, &ctEntry{origSrc: src, origDst: dst, replySrc: dst, replyDst: pub})
	return pub
}

func (n *simNet) inbound(from, dst netip.AddrPort, ttl int) delivery {
	if h := n.public[dst.Addr()]; h != nil {
		return delivery{h.socks[dst.Port()], from}
	}
	r := n.routers[dst.Addr()]
	if r == nil {
		return delivery{}
	}
	forward := func(to netip.AddrPort) delivery {
		if ttl-1 <= 0 {
			return delivery{}
		}
		if h := r.inside[to.Addr()]; h != nil {
			return delivery{h.socks[to.Port()], from}
		}
		return delivery{}
	}
	for _, e := range r.entries {
		if e.replySrc == from && e.replyDst == dst {
			return forward(e.origSrc)
		}
		if e.origSrc == from && e.origDst == dst {
			if e.local {
				return delivery{}
			}
			return forward(e.replySrc)
		}
	}
	if r.kind == "firewall" {
		return delivery{} // dropped in FORWARD: the entry is never confirmed
	}
	if to, ok := r.forwards[dst.Port()]; ok {
		r.entries = append(r.entries, &ctEntry{origSrc: from, origDst: dst, replySrc: to, replyDst: from})
		return forward(to)
	}
	// Unsolicited, to the router itself: conntrack keeps the pair.
	r.entries = append(r.entries, &ctEntry{origSrc: from, origDst: dst, replySrc: dst, replyDst: from, local: true})
	return delivery{}
}
