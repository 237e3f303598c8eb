package client

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/relayconn"
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

// natKnownWait bounds how long a first punch attempt waits for both
// sides' NAT kinds.
const natKnownWait = 2 * time.Second

// unusedGrace is how long a peer that control stopped naming keeps its
// connections: long enough to ride out a control server restart.
const unusedGrace = 30 * time.Second

// peer is another client: a destination of our sources, a source of our
// destinations, or both. All fields are guarded by Client.mu.
type peer struct {
	id     identity.ID
	cert   []byte
	direct []string

	asDestination map[string]string // our source name → the peer's route
	asSource      map[string]string // our destination name → the peer's route

	// outbound connections, dialed because the peer is a destination
	directConn, relayConn *quic.Conn
	dialingDirect         bool
	dialingRelay          bool
	nextDirect, nextRelay time.Time
	directBackoff         *backoff.Backoff
	relayBackoff          *backoff.Backoff
	lastDirectErr         string

	// NAT traversal, for status
	nat           string    // the peer's NAT behaviour, as control reports it
	punchAttempts int       // attempts toward or from this peer
	punchFailures int       // attempts we asked for that failed, in a row
	migrating     bool      // directConn is moving to a new path: not for new TCP connections
	pairsTried    int       // candidate pairs (socket, address) probed
	wantedSince   time.Time // when a direct path was first wanted and missing
	timeToDirect  time.Duration

	inbound map[*quic.Conn]path // accepted because the peer is a source

	ctx     context.Context
	cancel  context.CancelFunc
	wake    chan struct{}
	running bool
	unused  *time.Timer

	traffic traffic
}

func (p *peer) isSourceOfUs() bool { return len(p.asSource) > 0 }

func (p *peer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *peer) stop() {
	p.cancel()
	if p.unused != nil {
		p.unused.Stop()
	}
}

func (c *Client) peerLocked(id identity.ID) *peer {
	p := c.peers[id]
	if p == nil {
		ctx, cancel := context.WithCancel(c.runCtx)
		p = &peer{
			id: id, asDestination: map[string]string{}, asSource: map[string]string{},
			inbound: map[*quic.Conn]path{}, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1),
			directBackoff: backoff.New(time.Second, 30*time.Second),
			relayBackoff:  backoff.New(200*time.Millisecond, 5*time.Second),
		}
		c.peers[id] = p
	}
	if p.unused != nil {
		p.unused.Stop()
		p.unused = nil
	}
	return p
}

func (c *Client) wakePeersLocked() {
	for _, p := range c.peers {
		p.poke()
	}
	c.notifyChangedLocked()
}

// updatePeers applies control's current list of counterparts of one of our
// endpoints.
func (c *Client) updatePeers(m *wire.Peers) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runCtx == nil {
		return
	}
	listed := map[identity.ID]bool{}
	for _, wp := range m.Peers {
		if wp.ID != identity.IDOf(wp.Cert) {
			c.log.Warn("control sent a peer whose id does not match its certificate", "peer", wp.ID.Short())
			continue
		}
		listed[wp.ID] = true
		p := c.peerLocked(wp.ID)
		p.cert, p.direct, p.nat = wp.Cert, wp.Direct, wp.NAT
		if m.Role == "source" {
			if s := c.sources[m.Endpoint]; s != nil {
				if old, ok := p.asDestination[m.Endpoint]; !ok || old != wp.Route {
					c.checkRoutes(m.Endpoint, s.route, wp)
				}
			}
			p.asDestination[m.Endpoint] = wp.Route
			c.ensureDialerLocked(p)
		} else {
			p.asSource[m.Endpoint] = wp.Route
		}
		p.poke()
	}
	for id, p := range c.peers {
		if listed[id] {
			continue
		}
		if m.Role == "source" {
			delete(p.asDestination, m.Endpoint)
		} else {
			delete(p.asSource, m.Endpoint)
		}
		c.maybeRetirePeerLocked(p)
	}
	c.notifyChangedLocked()
}

// checkRoutes logs a source/destination pair whose routes share no path.
func (c *Client) checkRoutes(name, ours string, wp wire.Peer) {
	if (allows(ours, pathDirect) && allows(wp.Route, pathDirect)) || (allows(ours, pathRelay) && allows(wp.Route, pathRelay)) {
		return
	}
	c.log.Error("source and destination routes are incompatible: no connection will be made",
		"endpoint", name, "source_route", ours, "destination_route", wp.Route, "peer", wp.ID.Short())
}

func (c *Client) maybeRetirePeerLocked(p *peer) {
	if len(p.asDestination) > 0 || len(p.asSource) > 0 || p.unused != nil {
		return
	}
	p.unused = time.AfterFunc(unusedGrace, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(p.asDestination) == 0 && len(p.asSource) == 0 && c.peers[p.id] == p {
			delete(c.peers, p.id)
			p.stop()
			for conn := range p.inbound {
				_ = conn.CloseWithError(wire.ConnNormal, "peer no longer authorized")
			}
		}
	})
}

// wantsLocked reports which paths any of our sources toward p may use.
func (c *Client) wantsLocked(p *peer) (direct, relay bool) {
	for name, theirs := range p.asDestination {
		s := c.sources[name]
		if s == nil {
			continue
		}
		direct = direct || (allows(s.route, pathDirect) && allows(theirs, pathDirect))
		relay = relay || (allows(s.route, pathRelay) && allows(theirs, pathRelay))
	}
	return direct, relay
}

func (c *Client) ensureDialerLocked(p *peer) {
	if p.running {
		return
	}
	p.running = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.dialLoop(p)
	}()
}

// dialLoop keeps the outbound direct and relayed connections to a
// destination peer up, as its routes allow.
func (c *Client) dialLoop(p *peer) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		c.mu.Lock()
		wantD, wantR := c.wantsLocked(p)
		now := time.Now()
		next := now.Add(time.Minute)
		if wantD && !p.dialingDirect && len(p.direct) > 0 {
			if p.wantedSince.IsZero() {
				p.wantedSince = now
			}
			// The first attempt waits (briefly) until both NAT kinds are
			// known: they decide whether it needs many ports.
			if wait := p.wantedSince.Add(natKnownWait); p.punchAttempts == 0 && now.Before(wait) &&
				(p.nat == wire.NATUnknown || c.natType() == wire.NATUnknown) {
				if wait.Before(next) {
					next = wait
				}
			} else if !now.Before(p.nextDirect) {
				p.dialingDirect = true
				c.wg.Add(1)
				go func() { defer c.wg.Done(); c.holdDirect(p) }()
			} else if p.nextDirect.Before(next) {
				next = p.nextDirect
			}
		}
		relays := c.liveRelaysLocked()
		if wantR && !p.dialingRelay && len(relays) > 0 {
			if !now.Before(p.nextRelay) {
				p.dialingRelay = true
				c.wg.Add(1)
				go func() { defer c.wg.Done(); c.holdRelay(p, relays) }()
			} else if p.nextRelay.Before(next) {
				next = p.nextRelay
			}
		}
		c.mu.Unlock()
		timer.Reset(time.Until(next))
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
}

// holdDirect punches a path to the peer (coordinated by control), dials
// it, and keeps the connection until it dies. Direct dials never go to
// candidates blindly: a full-TTL packet that reaches the peer's NAT before
// the peer has opened it spoils that NAT's state (see package punch).
func (c *Client) holdDirect(p *peer) {
	o := c.punchPeer(p)
	c.mu.Lock()
	if o.err != nil {
		p.punchFailures++
	} else {
		p.punchFailures = 0
	}
	c.mu.Unlock()
	if o.err != nil {
		c.hold(p, nil, o.err, pathDirect)
		return
	}
	tr := c.direct
	if o.spray != nil {
		tr = &quic.Transport{Conn: o.spray}
		defer func() {
			_ = tr.Close()
			_ = o.spray.Close()
		}()
	}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	tlsConf := c.id.ClientTLS(wire.ALPNPeer, func(id identity.ID) bool { return id == p.id })
	conn, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(o.res.Remote), tlsConf, directPeerConfig())
	cancel()
	c.hold(p, conn, err, pathDirect)
}

// directPeerConfig is the peer configuration for direct connections: a
// short idle timeout with frequent keep-alives, so that a dead direct path
// (an address change, a NAT that dropped its state) is noticed within a
// few seconds and new connections go through the relay until a new path is
// punched. The idle timeout is the smaller of both ends', so the dialer's
// setting rules.
func directPeerConfig() *quic.Config {
	conf := quicconf.Peer()
	conf.MaxIdleTimeout = directIdle
	conf.KeepAlivePeriod = directKeepAlv
	return conf
}

func (c *Client) holdRelay(p *peer, relays []netip.AddrPort) {
	addrs := make([]net.Addr, 0, len(relays))
	for _, r := range relays {
		addrs = append(addrs, relayconn.Addr{Relay: r, Peer: p.id})
	}
	conn, err := c.dialFirst(p, addrs, c.relayTr)
	c.hold(p, conn, err, pathRelay)
}

func (c *Client) hold(p *peer, conn *quic.Conn, err error, pa path) {
	log := c.log.With("peer", p.id.Short(), "path", pa.String())
	c.mu.Lock()
	if err != nil {
		bo, next := p.directBackoff, &p.nextDirect
		if pa == pathRelay {
			bo, next = p.relayBackoff, &p.nextRelay
			p.dialingRelay = false
		} else {
			p.dialingDirect = false
			p.lastDirectErr = err.Error()
		}
		*next = time.Now().Add(bo.Next())
		c.mu.Unlock()
		if p.ctx.Err() == nil {
			log.Debug("peer connect failed", "err", err)
		}
		p.poke()
		return
	}
	if pa == pathDirect {
		p.directConn, p.lastDirectErr = conn, ""
		p.directBackoff.Reset()
		if !p.wantedSince.IsZero() {
			p.timeToDirect = time.Since(p.wantedSince)
			p.wantedSince = time.Time{}
		}
	} else {
		p.relayConn = conn
		p.relayBackoff.Reset()
	}
	c.notifyChangedLocked()
	c.mu.Unlock()
	log.Info("peer path up", "remote", conn.RemoteAddr().String())

	select {
	case <-p.ctx.Done():
		_ = conn.CloseWithError(wire.ConnNormal, "peer no longer used")
	case <-conn.Context().Done():
		log.Info("peer path down", "err", context.Cause(conn.Context()))
	}
	c.mu.Lock()
	if pa == pathDirect {
		p.directConn, p.dialingDirect = nil, false
	} else {
		p.relayConn, p.dialingRelay = nil, false
	}
	c.notifyChangedLocked()
	c.mu.Unlock()
	p.poke()
}

var errNoCandidates = errors.New("no candidate addresses")

// dialFirst races dials to addrs and returns the first connection.
func (c *Client) dialFirst(p *peer, addrs []net.Addr, tr *quic.Transport) (*quic.Conn, error) {
	if len(addrs) == 0 {
		return nil, errNoCandidates
	}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	type result struct {
		conn *quic.Conn
		err  error
	}
	results := make(chan result, len(addrs))
	tlsConf := c.id.ClientTLS(wire.ALPNPeer, func(id identity.ID) bool { return id == p.id })
	for _, a := range addrs {
		go func() {
			conn, err := tr.Dial(ctx, a, tlsConf, quicconf.Peer())
			results <- result{conn, err}
		}()
	}
	var winner *quic.Conn
	var firstErr error
	for range addrs {
		r := <-results
		switch {
		case r.err != nil:
			if firstErr == nil {
				firstErr = r.err
			}
		case winner == nil:
			winner = r.conn
			cancel() // stop the other attempts
		default:
			_ = r.conn.CloseWithError(wire.ConnReplaced, "another path won")
		}
	}
	if winner != nil {
		return winner, nil
	}
	return nil, firstErr
}
