// Package traversal is a client's NAT traversal. It owns the non-QUIC
// traffic of the direct socket (reflection replies, punch probes), learns
// the socket's candidates and NAT behaviour, keeps a port mapping on the
// router, and runs the client's side of the punch attempts that control
// coordinates. The client hands it control's punch messages and asks it for
// a path to a peer (Punch); everything else stays inside.
//
// docs/nat-traversal.md explains the reasons; package punch has one
// attempt's packet sequence.
package traversal

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/netmon"
	"github.com/connetd/connetd/punch"
	"github.com/connetd/connetd/wire"
)

// Control is the client's control session, as traversal needs it.
type Control interface {
	// Send queues m on the live session and reports whether there is one.
	// It never blocks on the network.
	Send(m wire.Message) bool
	// WaitUp waits until a session is live; false if ctx ended first.
	WaitUp(ctx context.Context) bool
}

// Config is what traversal needs from the client.
type Config struct {
	Transport *quic.Transport // the direct socket's, for its non-QUIC packets
	Conn      *net.UDPConn    // the direct socket
	Self      identity.ID
	// PortMapping asks the router (NAT-PMP, PCP, UPnP) to map the direct
	// port.
	PortMapping bool
	Control     Control
	// Changed is called when candidates, NAT behaviour or the port mapping
	// changed. It must not block.
	Changed func()
	// NetworkChanged is called after the host's addresses or default route
	// changed (not at start); lost tells that an address in use is gone. The
	// client moves its connections to the new network.
	NetworkChanged func(lost bool)
	// ServeSpray serves the peer's dial on the extra socket a punch attempt
	// found on this (destination) side; it owns conn and returns when done.
	ServeSpray func(ctx context.Context, conn *net.UDPConn)
	Logger     *slog.Logger
}

// Traversal is one client's NAT traversal.
type Traversal struct {
	cfg  Config
	log  *slog.Logger
	main *udpSock // the direct socket
	// limits of every attempt; their Budget bounds probes to candidates
	// that never answered, across attempts
	limits punch.Limits

	recheck   chan struct{} // measure the NAT again and report if changed
	netDirty  chan struct{} // poked by netmon
	gwChanged chan struct{} // a new default gateway: map again

	tasks sync.WaitGroup // punch attempts; Run waits for them

	mu       sync.Mutex
	runCtx   context.Context // nil unless Run is running: no attempt starts then
	local    []netip.Addr    // usable interface addresses (netlink)
	gateway  netip.Addr      // IPv4 default gateway
	mapped   netip.AddrPort  // port-mapped public address, if any
	mapProto string          // how it was mapped
	nat      string          // wire.NAT*
	natBasis string          // how nat was decided, for status
	natDepth int             // hops to the outermost NAT (natdepth.go); 0: none or unknown
	// depthPending is open from a new observed address until the depth
	// measured for it is known (nil otherwise); a punch waits for it,
	// bounded: opening with a guessed TTL would waste the attempt behind
	// a carrier NAT, and its peer's probes would spoil the carrier NAT's
	// mapping for the next one too.
	depthPending chan struct{}
	observed     netip.AddrPort // what control saw, from its welcome
	relays       []netip.AddrPort
	reported     string // the last candidates+NAT sent to control, to skip repeats
	sessions     map[[wire.PunchNonceLen]byte]*attempt
	spraying     int                          // extra sockets open for attempts (maxSpraySockets)
	sprayFor     map[identity.ID]int          // the same per peer (maxSpraySocketsPerPeer)
	waiters      map[identity.ID]chan Outcome // dialing sides waiting for their attempt
	reflects     map[[wire.ReflectTxIDLen]byte]chan netip.AddrPort
	peers        map[identity.ID]*PeerStats
	outcomes     map[outcomeKey]int64 // finished punch attempts (PunchOutcomes)
}

// PeerStats counts hole punching toward one peer, for status.
type PeerStats struct {
	Attempts int // attempts toward or from the peer
	Pairs    int // (socket, address) pairs probed, random ports included
}

// New prepares traversal for the direct socket; Run starts it.
func New(cfg Config) *Traversal {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Changed == nil {
		cfg.Changed = func() {}
	}
	if cfg.NetworkChanged == nil {
		cfg.NetworkChanged = func(bool) {}
	}
	limits := punch.DefaultLimits
	limits.Budget = punch.NewBudget()
	return &Traversal{
		cfg:       cfg,
		limits:    limits,
		log:       cfg.Logger,
		main:      newUDPSock(cfg.Conn),
		recheck:   make(chan struct{}, 1),
		netDirty:  make(chan struct{}, 1),
		gwChanged: make(chan struct{}, 1),
		sessions:  map[[wire.PunchNonceLen]byte]*attempt{},
		sprayFor:  map[identity.ID]int{},
		waiters:   map[identity.ID]chan Outcome{},
		reflects:  map[[wire.ReflectTxIDLen]byte]chan netip.AddrPort{},
		peers:     map[identity.ID]*PeerStats{},
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// loopbackOnly reports whether the direct socket is bound to loopback, where
// neither a router nor a peer elsewhere can reach it: no port mapping and
// no interface candidates then.
func (t *Traversal) loopbackOnly() bool {
	la, ok := t.cfg.Conn.LocalAddr().(*net.UDPAddr)
	return ok && la.IP.IsLoopback()
}

// Run reads the direct socket's non-QUIC datagrams, watches the network,
// keeps a port mapping, and reports candidates and NAT behaviour to control
// when they change, until ctx ends. Punch attempts under way end with it.
func (t *Traversal) Run(ctx context.Context) error {
	t.mu.Lock()
	t.runCtx = ctx
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.runCtx = nil // no attempt starts after this
		t.mu.Unlock()
		t.tasks.Wait()
	}()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { t.readDirect(ctx); return nil })
	g.Go(func() error {
		err := netmon.Watch(ctx, netmon.Options{}, func() { poke(t.netDirty) })
		if err != nil && ctx.Err() == nil {
			t.log.Warn("network changes will not be noticed", "err", err)
		}
		return nil
	})
	t.refreshLocal(false)
	if t.cfg.PortMapping && !t.loopbackOnly() {
		g.Go(func() error { t.runPortMapping(ctx); return nil })
	}
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.netDirty:
				t.refreshLocal(true)
			case <-t.recheck:
			}
			t.discoverNAT(ctx)
			t.report()
			t.discoverDepth(ctx)
		}
	})
	return g.Wait()
}

// spawn runs f as a task of Run; false if Run is not running.
func (t *Traversal) spawn(f func(ctx context.Context)) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	ctx := t.runCtx
	if ctx == nil {
		return false
	}
	t.tasks.Go(func() { f(ctx) })
	return true
}

// SetObserved takes the address control observed for the direct socket, at
// the start of each control session: the NAT is measured again and
// candidates are reported to the new session.
func (t *Traversal) SetObserved(observed string) {
	ap, err := netip.ParseAddrPort(observed)
	t.mu.Lock()
	t.observed = netip.AddrPort{}
	if err == nil {
		t.observed = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if t.depthPending == nil {
			t.depthPending = make(chan struct{})
		}
	}
	t.reported = ""
	t.mu.Unlock()
	poke(t.recheck)
}

// SetRelays takes the relays' addresses: each can tell which address it
// sees for the direct socket.
func (t *Traversal) SetRelays(relays []netip.AddrPort) {
	t.mu.Lock()
	t.relays = slices.Clone(relays)
	t.mu.Unlock()
	poke(t.recheck)
}

// refreshLocal re-reads addresses and routes. After a real change (not
// the first read) it tells the client, which moves to the new network.
func (t *Traversal) refreshLocal(isChange bool) {
	st, err := netmon.Read(netmon.Options{})
	if err != nil {
		t.log.Warn("cannot read network state", "err", err)
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
	t.log.Info("network changed: re-gathering candidates", "addrs", st.Addrs, "gateway", st.Gateway)
	t.cfg.NetworkChanged(lost)
}

// Candidates are the direct socket's addresses peers may try: the port
// mapping first, then interface addresses (route sources first) at the
// socket's port, as far as the socket's bind allows.
func (t *Traversal) Candidates() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.candidatesLocked()
}

func (t *Traversal) candidatesLocked() []string {
	la, ok := t.cfg.Conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil
	}
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

// NAT is the direct socket's NAT behaviour, a wire.NAT* value.
func (t *Traversal) NAT() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nat
}

// NATBasis says how NAT() was decided, for diagnosis: which addresses
// control and a relay observed. Empty until the first decision.
func (t *Traversal) NATBasis() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.natBasis
}

// PortMapping describes the router's mapping, e.g. "pcp 198.51.100.1:19192",
// or is empty.
// Gateway is the IPv4 default gateway (invalid if none): in 100.64.0.0/10
// it says this host sits on a carrier's network, behind its NAT.
func (t *Traversal) Gateway() netip.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gateway
}

func (t *Traversal) PortMapping() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.mapped.IsValid() {
		return ""
	}
	return t.mapProto + " " + t.mapped.String()
}

// PeerStats reports the punching toward peer so far.
func (t *Traversal) PeerStats(peer identity.ID) PeerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.peers[peer]; s != nil {
		return *s
	}
	return PeerStats{}
}

// Forget drops what is kept about a peer that is gone.
func (t *Traversal) Forget(peer identity.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.peers, peer)
}

func (t *Traversal) statsLocked(peer identity.ID) *PeerStats {
	s := t.peers[peer]
	if s == nil {
		s = &PeerStats{}
		t.peers[peer] = s
	}
	return s
}

// report sends candidates and NAT behaviour to control if they changed
// since the last report to this session.
func (t *Traversal) report() {
	t.mu.Lock()
	cands, nat := t.candidatesLocked(), t.nat
	key := nat + "|" + strings.Join(cands, ",")
	if t.reported == key {
		t.mu.Unlock()
		return
	}
	t.reported = key
	t.mu.Unlock()
	if !t.cfg.Control.Send(&wire.Candidates{Direct: cands, NAT: nat}) {
		t.mu.Lock()
		if t.reported == key {
			t.reported = "" // no session: the next one gets it
		}
		t.mu.Unlock()
	}
}
