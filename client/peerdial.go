package client

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// dialLoop keeps the outbound direct and relayed connections to a
// destination peer up, as the routes of our sources allow.
func (p *peer) dialLoop() {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// Read outside the peer's lock: both have locks of their own.
		selfNAT := p.c.trav.NAT()
		relays := p.c.relays.live()
		p.mu.Lock()
		wantD, wantR := p.wantsLocked()
		now := time.Now()
		next := now.Add(time.Minute)
		if wantD && !p.dialingDirect && len(p.direct) > 0 && !p.closed {
			if p.wantedSince.IsZero() {
				p.wantedSince = now
			}
			attempts := p.c.trav.PeerStats(p.id).Attempts
			// The first attempt waits (briefly) until both NAT kinds are
			// known: they decide whether it needs many ports.
			if wait := p.wantedSince.Add(natKnownWait); attempts == 0 && now.Before(wait) &&
				(p.nat == wire.NATUnknown || selfNAT == wire.NATUnknown) {
				next = minTime(next, wait)
			} else if !now.Before(p.nextDirect) {
				p.dialingDirect = true
				peerNAT, failures := p.nat, p.punchFailures
				p.wg.Go(func() { p.holdDirect(peerNAT, failures) })
			} else {
				next = minTime(next, p.nextDirect)
			}
		}
		if wantR && !p.dialingRelay && len(relays) > 0 && !p.closed {
			if !now.Before(p.nextRelay) {
				p.dialingRelay = true
				p.wg.Go(func() { p.holdRelay(relays) })
			} else {
				next = minTime(next, p.nextRelay)
			}
		}
		p.mu.Unlock()
		timer.Reset(time.Until(next))
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// holdDirect punches a path to the peer (coordinated by control), dials
// it, and keeps the connection until it dies. Direct dials never go to
// candidates blindly: a full-TTL packet that reaches the peer's NAT before
// the peer has opened it spoils that NAT's state (see package punch).
func (p *peer) holdDirect(peerNAT string, failures int) {
	if p.tryRedial() {
		return
	}
	o := p.c.trav.Punch(p.ctx, p.id, peerNAT, failures)
	p.mu.Lock()
	if o.Err != nil {
		p.punchFailures++
	} else {
		p.punchFailures = 0
	}
	p.mu.Unlock()
	p.c.changed.Notify() // punch counters
	if o.Err != nil {
		p.hold(nil, o.Err, pathDirect)
		return
	}
	tr := p.c.direct
	if o.Spray != nil {
		tr = &quic.Transport{Conn: o.Spray}
		defer func() {
			_ = tr.Close()
			_ = o.Spray.Close()
		}()
	}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	tlsConf := p.peerTLS()
	remote := net.UDPAddrFromAddrPort(o.Remote)
	conn, err := tr.Dial(ctx, remote, tlsConf, directPeerConfig())
	cancel()
	if err == nil {
		// A spray socket is gone after this connection: only a path from
		// the direct socket can be re-dialed (redial.go).
		p.mu.Lock()
		p.lastDirect = remote
		if o.Spray != nil {
			p.lastDirect = nil
		}
		p.mu.Unlock()
	}
	p.hold(conn, err, pathDirect)
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
	conf.KeepAlivePeriod = directKeepAlive
	return conf
}

func (p *peer) holdRelay(relays []netip.AddrPort) {
	addrs := make([]net.Addr, 0, len(relays))
	for _, r := range relays {
		addrs = append(addrs, p.c.relayNet.PeerAddr(r, p.id))
	}
	// Keep-alives every peerKeepAlive let watchHealth notice a relay
	// that stopped forwarding within stallAfter.
	conf := quicconf.RelayedPeer()
	conf.KeepAlivePeriod = peerKeepAlive
	conn, err := p.dialFirst(addrs, p.c.relayTr, conf)
	p.hold(conn, err, pathRelay)
}

// hold records a dial's outcome and, for a connection, keeps it until it
// dies or the peer closes.
func (p *peer) hold(conn *quic.Conn, err error, pa path) {
	log := p.c.log.With("peer", p.id.Short(), "path", pa.String())
	p.mu.Lock()
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
		p.mu.Unlock()
		if p.ctx.Err() == nil {
			log.Debug("peer connect failed", "err", err)
		}
		p.poke()
		return
	}
	up, lost := directUp, directLost
	if pa == pathRelay {
		up, lost = relayUp, relayLost
	}
	p.c.paths.add(up)
	if pa == pathDirect {
		p.directConn, p.lastDirectErr = conn, ""
		p.directBackoff.Reset()
		if !p.wantedSince.IsZero() {
			p.timeToDirect = time.Since(p.wantedSince)
			p.wantedSince = time.Time{}
			// Only the first: a later one measures a recovery after a
			// loss, a different thing (path_changes counts those).
			if !p.hadDirect {
				p.c.timeToDirect.observe(p.timeToDirect)
			}
		}
		p.hadDirect = true
	} else {
		p.relayConn = conn
		p.relayBackoff.Reset()
	}
	p.mu.Unlock()
	p.c.changed.Notify()
	log.Info("peer path up", msgid.PeerPathUp.Attr(), "remote", p.c.relayNet.Describe(conn.RemoteAddr()),
		"resumable", resumable(conn))
	if resumable(conn) {
		p.wg.Go(func() { p.readAcks(conn) })
		p.wg.Go(func() { p.watchHealth(conn, pa) })
		if pa == pathDirect {
			p.moveFlows(conn)
		}
	}

	select {
	case <-p.ctx.Done():
		_ = conn.CloseWithError(wire.ConnNormal, "peer no longer used")
	case <-conn.Context().Done():
		log.Info("peer path down", msgid.PeerPathLost.Attr(), "err", context.Cause(conn.Context()))
	}
	p.mu.Lock()
	if p.ctx.Err() == nil { // a peer no longer used changes no path
		if pa == pathDirect && p.changeClosed {
			lost = networkChange
		}
		p.c.paths.add(lost)
	}
	if pa == pathDirect {
		p.noteDirectLostLocked(context.Cause(conn.Context()))
		p.directConn, p.dialingDirect, p.changeClosed = nil, false, false
	} else {
		p.relayConn, p.dialingRelay = nil, false
	}
	p.mu.Unlock()
	p.c.changed.Notify()
	p.poke()
}

var errNoCandidates = errors.New("no candidate addresses")

// dialFirst races dials to addrs and returns the first connection.
func (p *peer) dialFirst(addrs []net.Addr, tr *quic.Transport, conf *quic.Config) (*quic.Conn, error) {
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
	tlsConf := p.peerTLS()
	for _, a := range addrs {
		go func() { // each sends once into the buffered channel; the loop below receives them all
			conn, err := tr.Dial(ctx, a, tlsConf, conf)
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

// followChange decides, after our address changed, whether a direct
// connection we dialed survived: QUIC moves a connection to the new
// address by itself (the dialer's NAT rebinding) when the peer accepts
// packets from it — a peer without NAT or firewall does; a peer behind a
// NAT drops them. If packets still arrive, the connection and the TCP
// connections it carries go on; otherwise it is closed at once (rather
// than after the idle timeout) and a new path is punched. Meanwhile new
// TCP connections go through the relay.
func (p *peer) followChange(conn *quic.Conn) {
	defer func() {
		p.mu.Lock()
		p.migrating = false
		p.mu.Unlock()
		p.c.changed.Notify()
	}()
	log := p.c.log.With("peer", p.id.Short())
	// Packets the peer sent before the change may still arrive: start
	// counting after them.
	select {
	case <-time.After(followSettle):
	case <-conn.Context().Done():
		return
	}
	before := conn.ConnectionStats().PacketsReceived
	deadline := time.NewTimer(followWait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-conn.Context().Done():
			return
		case <-deadline.C:
			log.Info("direct path did not survive the network change; punching a new one", msgid.PeerPathChanged.Attr())
			p.mu.Lock()
			p.changeClosed = p.directConn == conn
			p.mu.Unlock()
			_ = conn.CloseWithError(wire.ConnNormal, "network changed")
			return
		case <-tick.C:
			if conn.ConnectionStats().PacketsReceived > before {
				log.Info("direct path survived the network change")
				return
			}
		}
	}
}
