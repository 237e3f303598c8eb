package client

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

type path int

const (
	pathNone path = iota
	pathDirect
	pathRelay
)

func (p path) String() string {
	switch p {
	case pathDirect:
		return "direct"
	case pathRelay:
		return "relay"
	}
	return "none"
}

// allows reports whether route permits path.
func allows(route string, p path) bool {
	switch route {
	case wire.RouteAny:
		return true
	case wire.RouteDirect:
		return p == pathDirect
	case wire.RouteRelay:
		return p == pathRelay
	}
	return false
}

// routes are the two route settings of one endpoint shared with a peer.
type routes struct{ ours, theirs string }

func (r routes) allow(p path) bool { return allows(r.ours, p) && allows(r.theirs, p) }

// peer is another client: a destination of our sources, a source of our
// destinations, or both. It owns its connections and the goroutines that
// keep them; start launches them and close ends and waits for them. Its
// goroutines never take Client.mu, so the client may hold it while calling
// peer methods.
type peer struct {
	id  identity.ID
	c   *Client
	ctx context.Context
	// cancel ends every goroutine of the peer.
	cancel context.CancelFunc
	wake   chan struct{}
	wg     sync.WaitGroup
	// traffic counts bytes in both directions, over all paths.
	traffic traffic
	// byPath counts the same bytes by endpoint and path.
	byPath pathTraffic

	mu     sync.Mutex
	closed bool
	direct []string // candidates, as control reports them
	nat    string   // the peer's NAT behaviour, as control reports it

	asDestination map[string]routes // by our source's name
	asSource      map[string]routes // by our destination's name

	// outbound connections, dialed because the peer is a destination
	directConn, relayConn *quic.Conn
	dialingDirect         bool
	dialingRelay          bool
	nextDirect, nextRelay time.Time
	directBackoff         *backoff.Backoff
	relayBackoff          *backoff.Backoff
	lastDirectErr         string
	punchFailures         int           // attempts we asked for that failed, in a row
	migrating             bool          // directConn is moving to a new path: not for new TCP connections
	changeClosed          bool          // followChange closed directConn: its loss counts as networkChange
	wantedSince           time.Time     // when a direct path was first wanted and missing
	timeToDirect          time.Duration // from wanting a direct path to having one
	hadDirect             bool          // a direct path came up once: the histogram has its time
	lastDirect            *net.UDPAddr  // where our last direct connection went, from the direct socket
	directLostAt          time.Time     // when the peer ended it (closed, reset); zero otherwise (redial.go)

	inbound map[*quic.Conn]path // accepted because the peer is a source
	// muxes hand each connection's datagrams to its UDP flows.
	muxes map[*quic.Conn]*flowMux
	// flows are the resumable TCP flows with the peer, both ways.
	flows map[rflowKey]*rflow
	// expected are the flows whose Connect is being served (the service
	// dialed) before they join flows: a Resume that overtakes one waits.
	expected map[uint64]chan struct{}
	// ackers send our acknowledgements of its flows, per connection.
	ackers map[*quic.Conn]*acker
	// stalled marks connections we dialed that went silent.
	stalled map[*quic.Conn]bool
}

func newPeer(c *Client, id identity.ID) *peer {
	ctx, cancel := context.WithCancel(context.Background())
	return &peer{
		id: id, c: c, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1),
		asDestination: map[string]routes{}, asSource: map[string]routes{},
		inbound:       map[*quic.Conn]path{},
		directBackoff: backoff.New(time.Second, 30*time.Second),
		relayBackoff:  backoff.New(200*time.Millisecond, 5*time.Second),
	}
}

// start launches the dial loop, which keeps outbound paths while the peer
// is a destination of one of our sources.
func (p *peer) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wg.Go(p.dialLoop)
}

// close ends the peer's connections and goroutines and waits for them.
func (p *peer) close(reason string) {
	p.mu.Lock()
	p.closed = true
	conns := make([]*quic.Conn, 0, len(p.inbound))
	for conn := range p.inbound {
		conns = append(conns, conn)
	}
	p.mu.Unlock()
	p.cancel()
	for _, conn := range conns {
		_ = conn.CloseWithError(wire.ConnNormal, reason)
	}
	p.wg.Wait()
}

func (p *peer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// update takes what control says about the peer.
func (p *peer) update(direct []string, nat string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.direct, p.nat = direct, nat
}

// setRole records the peer as counterpart of our endpoint name in role
// ("source": we are the source, the peer a destination); ok false removes
// it. It reports whether the routes are new or changed.
func (p *peer) setRole(role, name string, r routes, ok bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.asSource
	if role == "source" {
		m = p.asDestination
	}
	old, had := m[name]
	if !ok {
		delete(m, name)
		return had
	}
	m[name] = r
	return !had || old != r
}

// unused reports whether no endpoint of ours uses the peer any more.
func (p *peer) unused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.asDestination) == 0 && len(p.asSource) == 0
}

func (p *peer) isSourceOfUs() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.asSource) > 0
}

// sourceRoutes are the routes of our destination name toward the peer,
// if the peer is one of its sources.
func (p *peer) sourceRoutes(name string) (routes, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.asSource[name]
	return r, ok
}

// wantsLocked reports which paths any of our sources toward p may use.
func (p *peer) wantsLocked() (direct, relay bool) {
	for _, r := range p.asDestination {
		direct = direct || r.allow(pathDirect)
		relay = relay || r.allow(pathRelay)
	}
	return direct, relay
}

// serve records a connection the peer made to us and serves it; false if
// the peer is closing.
func (p *peer) serve(conn *quic.Conn, pa path) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.inbound[conn] = pa
	p.wg.Go(func() { p.serveInbound(conn, pa) })
	return true
}

func (p *peer) removeInbound(conn *quic.Conn) {
	p.mu.Lock()
	delete(p.inbound, conn)
	p.mu.Unlock()
	p.c.changed.Notify()
}

// pathFor picks the connection a new TCP connection of our source name
// goes over: the peer's best usable path, with its RTT.
func (p *peer) pathFor(name string, avoid *quic.Conn) (*quic.Conn, path, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.asDestination[name]
	if !ok {
		return nil, pathNone, 0
	}
	for _, cand := range []struct {
		conn *quic.Conn
		pa   path
	}{{p.directConn, pathDirect}, {p.relayConn, pathRelay}} {
		if cand.conn == nil || cand.conn == avoid || cand.conn.Context().Err() != nil || !r.allow(cand.pa) ||
			(cand.pa == pathDirect && p.migrating) || p.stalled[cand.conn] {
			continue
		}
		return cand.conn, cand.pa, cand.conn.ConnectionStats().SmoothedRTT
	}
	return nil, pathNone, 0
}

// networkChanged prepares the peer for a new network: direct paths are
// punched again at once; if an address we used is gone, direct
// connections are checked (dialed) or closed (accepted).
func (p *peer) networkChanged(lost bool) {
	p.mu.Lock()
	p.directBackoff.Reset()
	p.nextDirect = time.Time{}
	p.punchFailures = 0
	var stale []*quic.Conn
	if lost {
		// Our old connection's packets, now leaving from a new public
		// port, have likely left stale entries in the peer's NAT: start
		// with a many-port attempt (fresh sockets, fresh mappings).
		p.punchFailures = 1
		// Connections we dialed may follow (QUIC migrates a dialer whose
		// address changed, if the peer lets the new address in): check.
		// Those we accepted cannot (the peer would have to follow us):
		// closing them now sends new connections to the relay at once
		// instead of after the idle timeout.
		if conn := p.directConn; conn != nil && !p.migrating && !p.closed {
			p.migrating = true
			p.wg.Go(func() { p.followChange(conn) })
		}
		for conn, pa := range p.inbound {
			if pa == pathDirect {
				stale = append(stale, conn)
			}
		}
	}
	p.mu.Unlock()
	for _, conn := range stale {
		_ = conn.CloseWithError(wire.ConnNormal, "network changed")
	}
	p.poke()
}
