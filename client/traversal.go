package client

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/netmon"
	"github.com/connetd/connetd/punch"
	"github.com/connetd/connetd/wire"
)

// traversal is the client's NAT traversal state: what it knows about its
// own network (candidates, NAT behaviour, port mapping), and the punch
// attempts under way on its direct socket. Its own mutex guards it; it
// never holds Client.mu while taking it, but may be taken under Client.mu.
type traversal struct {
	main *udpSock // the direct socket

	mu        sync.Mutex
	local     []netip.Addr   // usable interface addresses (netlink)
	gateway   netip.Addr     // IPv4 default gateway
	mapped    netip.AddrPort // port-mapped public address, if any
	mapProto  string         // how it was mapped
	nat       string         // wire.NAT*
	reported  string         // the last candidates+NAT sent to control, to skip repeats
	sessions  map[[wire.PunchNonceLen]byte]*punchRun
	waiters   map[identity.ID]chan punchOutcome // sources waiting for their attempt's outcome
	reflects  map[[wire.ReflectTxIDLen]byte]chan netip.AddrPort
	changed   chan struct{} // poked when something worth re-reporting changed
	netDirty  chan struct{} // poked by netmon
	gwChanged chan struct{} // poked when the default gateway changed
}

// punchRun is one attempt under way.
type punchRun struct {
	sess *punch.Session
	peer identity.ID
	goCh chan struct{} // closed by punch_go
	once sync.Once
}

// punchOutcome is what a source's holdDirect gets back.
type punchOutcome struct {
	res   punch.Result
	spray *net.UDPConn // the spray socket the path uses, nil for the direct socket
	stats punch.Stats
	err   error
}

func newTraversal(direct *net.UDPConn) *traversal {
	return &traversal{
		main:      newUDPSock(direct),
		sessions:  map[[wire.PunchNonceLen]byte]*punchRun{},
		waiters:   map[identity.ID]chan punchOutcome{},
		reflects:  map[[wire.ReflectTxIDLen]byte]chan netip.AddrPort{},
		changed:   make(chan struct{}, 1),
		netDirty:  make(chan struct{}, 1),
		gwChanged: make(chan struct{}, 1),
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Time bounds of one attempt, as seen by the client.
const (
	punchGoWait   = 4 * time.Second  // for control's punch_go after our ready
	punchWait     = 12 * time.Second // a source waits this long for an outcome
	sprayListen   = 15 * time.Second // a destination keeps a winning spray socket this long for the dial
	reflectWait   = 700 * time.Millisecond
	reflectTries  = 3
	followSettle  = 300 * time.Millisecond  // after a change, before counting the peer's packets
	followWait    = 1500 * time.Millisecond // then this long for one, or the direct path is dead
	controlWait   = 3 * time.Second         // a punch waits this long for control to come back
	directIdle    = 5 * time.Second         // a dead direct path is noticed within this
	directKeepAlv = time.Second
)

// loopbackOnly reports whether the direct socket is bound to loopback, where
// neither a router nor a peer elsewhere can reach it: no port mapping and
// no interface candidates then.
func (c *Client) loopbackOnly() bool {
	la, ok := c.cfg.DirectConn.LocalAddr().(*net.UDPAddr)
	return ok && la.IP.IsLoopback()
}

// runTraversal owns NAT traversal: it reads the non-QUIC datagrams of the
// direct socket, watches the network, keeps a port mapping, and reports
// candidates and NAT behaviour to control when they change.
func (c *Client) runTraversal(ctx context.Context) {
	t := c.trav
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() { defer wg.Done(); c.readDirect(ctx) }()
	go func() {
		defer wg.Done()
		err := netmon.Watch(ctx, netmon.Options{}, func() { poke(t.netDirty) })
		if err != nil && ctx.Err() == nil {
			c.log.Warn("network changes will not be noticed", "err", err)
		}
	}()
	c.refreshLocal(false)
	if c.cfg.PortMapping && !c.loopbackOnly() {
		wg.Add(1)
		go func() { defer wg.Done(); c.runPortMapping(ctx) }()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.netDirty:
			c.refreshLocal(true)
		case <-t.changed:
		}
		c.discoverNAT(ctx)
		c.reportCandidates()
	}
}

// refreshLocal re-reads addresses and routes. After a real change (not
// the first read) it moves everything to the new network: a new control
// session (control then observes the new public address), new relay links,
// and direct paths re-punched as soon as they fail.
func (c *Client) refreshLocal(isChange bool) {
	t := c.trav
	st, err := netmon.Read(netmon.Options{})
	if err != nil {
		c.log.Warn("cannot read network state", "err", err)
		return
	}
	t.mu.Lock()
	same := slices.Equal(st.Addrs, t.local) && st.Gateway == t.gateway
	gwChanged := st.Gateway != t.gateway
	lost := gwChanged
	for _, a := range t.local {
		lost = lost || !slices.Contains(st.Addrs, a)
	}
	t.local, t.gateway = st.Addrs, st.Gateway
	t.mu.Unlock()
	if gwChanged || (isChange && !same) {
		poke(t.gwChanged) // a new network: map again
	}
	if !isChange || same {
		return
	}
	c.log.Info("network changed: re-gathering candidates", "addrs", st.Addrs, "gateway", st.Gateway)
	c.mu.Lock()
	if c.ctl != nil && c.ctl.conn != nil {
		_ = c.ctl.conn.CloseWithError(wire.ConnNormal, "network changed")
		c.ctl = nil // nothing more goes to the old session
	}
	for _, l := range c.relays {
		if l.conn != nil {
			_ = l.conn.CloseWithError(wire.ConnNormal, "network changed")
		}
	}
	for _, p := range c.peers {
		p.directBackoff.Reset()
		p.nextDirect = time.Time{}
		p.punchFailures = 0
		if !lost {
			continue
		}
		// Our old connection's packets, now leaving from a new public
		// port, have likely left stale entries in the peer's NAT: start
		// with a many-port attempt (fresh sockets, fresh mappings).
		p.punchFailures = 1
		// An address we used is gone. Connections we dialed may follow
		// (QUIC migrates a dialer whose address changed, if the peer lets
		// the new address in): check. Those we accepted cannot (the peer
		// would have to follow us): closing them now sends new
		// connections to the relay at once instead of after the idle
		// timeout.
		if conn := p.directConn; conn != nil && !p.migrating {
			p.migrating = true
			c.wg.Add(1)
			go func() { defer c.wg.Done(); c.followChange(p, conn) }()
		}
		for conn, pa := range p.inbound {
			if pa == pathDirect {
				_ = conn.CloseWithError(wire.ConnNormal, "network changed")
			}
		}
	}
	c.wakePeersLocked()
	c.mu.Unlock()
}

// localCandidates are the direct socket's addresses peers may try: the
// port mapping first, then interface addresses (route sources first) at
// the socket's port, as far as the socket's bind allows.
func (c *Client) localCandidates() []string {
	la, ok := c.cfg.DirectConn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil
	}
	t := c.trav
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	if t.mapped.IsValid() {
		out = append(out, t.mapped.String())
	}
	if !la.IP.IsUnspecified() {
		if !la.IP.IsLoopback() {
			out = append(out, la.String())
		}
		return out
	}
	v4only := la.IP.To4() != nil
	for _, a := range t.local {
		if v4only && !a.Is4() {
			continue
		}
		out = append(out, netip.AddrPortFrom(a, uint16(la.Port)).String())
	}
	return out
}

func (c *Client) natType() string {
	c.trav.mu.Lock()
	defer c.trav.mu.Unlock()
	return c.trav.nat
}

// reportCandidates sends candidates and NAT behaviour to control if they
// changed since the last report.
func (c *Client) reportCandidates() {
	cands := c.localCandidates()
	nat := c.natType()
	key := nat + "|" + strings.Join(cands, ",")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctl == nil {
		return
	}
	c.trav.mu.Lock()
	if c.trav.reported == key {
		c.trav.mu.Unlock()
		return
	}
	c.trav.reported = key
	c.trav.mu.Unlock()
	c.sendLocked(&wire.Candidates{Direct: cands, NAT: nat})
}

// discoverNAT learns how the NAT in front of the direct socket maps: it
// compares the address control observed with the address a relay observes
// for the same socket. Equal ports: endpoint-independent ("easy"); different
// ports: a new mapping per destination ("hard"); control's observed address
// being our own: no NAT.
func (c *Client) discoverNAT(ctx context.Context) {
	c.mu.Lock()
	observed := c.observed
	var relays []netip.AddrPort
	for _, l := range c.relays {
		relays = append(relays, l.addr)
	}
	c.mu.Unlock()
	obs, err := netip.ParseAddrPort(observed)
	if err != nil {
		return
	}
	obs = netip.AddrPortFrom(obs.Addr().Unmap(), obs.Port())
	t := c.trav
	t.mu.Lock()
	own := slices.Contains(t.local, obs.Addr())
	t.mu.Unlock()
	nat := wire.NATUnknown
	if own || obs.Addr().IsLoopback() {
		nat = wire.NATNone
	} else {
		slices.SortFunc(relays, func(a, b netip.AddrPort) int { return a.Compare(b) })
		for _, r := range relays {
			got, ok := c.reflect(ctx, r)
			if !ok {
				continue
			}
			if got == obs {
				nat = wire.NATEasy
			} else {
				nat = wire.NATHard
			}
			break
		}
	}
	t.mu.Lock()
	old := t.nat
	t.nat = nat
	t.mu.Unlock()
	if old != nat {
		c.log.Info("NAT behaviour", "nat", natName(nat), "observed", observed)
		c.mu.Lock()
		c.wakePeersLocked()
		c.mu.Unlock()
	}
}

func natName(n string) string {
	if n == wire.NATUnknown {
		return "unknown"
	}
	return n
}

// reflect asks the server at addr which address it sees for the direct
// socket.
func (c *Client) reflect(ctx context.Context, addr netip.AddrPort) (netip.AddrPort, bool) {
	t := c.trav
	var tx [wire.ReflectTxIDLen]byte
	_, _ = rand.Read(tx[:])
	ch := make(chan netip.AddrPort, 1)
	t.mu.Lock()
	t.reflects[tx] = ch
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.reflects, tx)
		t.mu.Unlock()
	}()
	req := wire.AppendReflect(nil, wire.Reflect{TxID: tx})
	for range reflectTries {
		if err := t.main.WriteTo(req, addr, 0); err != nil {
			return netip.AddrPort{}, false
		}
		select {
		case got := <-ch:
			return got, true
		case <-ctx.Done():
			return netip.AddrPort{}, false
		case <-time.After(reflectWait):
		}
	}
	return netip.AddrPort{}, false
}

// readDirect reads the direct socket's non-QUIC datagrams: reflect replies
// and punch probes.
func (c *Client) readDirect(ctx context.Context) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.direct.ReadNonQUICPacket(ctx, buf)
		if err != nil {
			return
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		c.handleProbe(c.trav.main, ua.AddrPort(), buf[:n])
	}
}

// handleProbe dispatches one datagram received on sock.
func (c *Client) handleProbe(sock punch.Conn, from netip.AddrPort, b []byte) {
	t := c.trav
	if r, err := wire.ParseReflect(b); err == nil && r.Reply {
		t.mu.Lock()
		ch := t.reflects[r.TxID]
		t.mu.Unlock()
		if ch != nil {
			select {
			case ch <- r.Observed:
			default:
			}
		}
		return
	}
	pr, err := wire.ParseProbe(b)
	if err != nil {
		return
	}
	t.mu.Lock()
	run := t.sessions[pr.Nonce]
	t.mu.Unlock()
	if run != nil {
		run.sess.Handle(sock, from, b)
	}
}
