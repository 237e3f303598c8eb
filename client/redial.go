package client

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/wire"
)

// Fast re-dial after a peer restart. A destination restarted by systemd
// keeps its identity (the store) and its UDP sockets (the file descriptor
// store): same peer ID, same ports, so the mappings in both NATs still
// hold. When the direct path to such a peer ended because the peer ended
// it (it closed the connection as it stopped, or answered with a stateless
// reset because it no longer knew the connection), the address that worked
// moments ago is dialed again first, without asking control for a punch.

const (
	// redialWindow is how long after the loss the last address is tried.
	redialWindow = 30 * time.Second
	// redialFor bounds one quick re-dial (a few tries while the peer
	// comes back); then the usual punch follows.
	redialFor = time.Second
	// redialPause is the pause between tries within redialFor.
	redialPause = 100 * time.Millisecond
)

// endedByPeer reports whether a direct connection's end came from the
// peer itself: its CONNECTION_CLOSE or a stateless reset. A path that went
// silent (idle timeout) may have moved and is punched again.
func endedByPeer(cause error) bool {
	var reset *quic.StatelessResetError
	if errors.As(cause, &reset) {
		return true
	}
	var app *quic.ApplicationError
	return errors.As(cause, &app) && app.Remote
}

// noteDirectLostLocked records how a direct connection dialed to
// lastDirect ended.
func (p *peer) noteDirectLostLocked(cause error) {
	if p.lastDirect != nil && endedByPeer(cause) {
		p.directLostAt = time.Now()
	} else {
		p.directLostAt = time.Time{}
	}
}

// recentDirect is the address to re-dial first, or nil.
func (p *peer) recentDirect() *net.UDPAddr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastDirect == nil || p.directLostAt.IsZero() || time.Since(p.directLostAt) > redialWindow {
		return nil
	}
	return p.lastDirect
}

// named is called when control names the peer again as a destination of
// one of our sources: after a restart of the peer the direct path is tried
// at once, not after the backoff of attempts made while it was away.
func (p *peer) named() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.directLostAt.IsZero() && time.Since(p.directLostAt) <= redialWindow {
		p.nextDirect = time.Time{}
		p.directBackoff.Reset()
	}
}

// wantsDirect reports whether a source of ours still wants a direct path.
func (p *peer) wantsDirect() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, _ := p.wantsLocked()
	return d && !p.closed
}

// redial dials addr on the direct socket, retrying for up to redialFor.
func (p *peer) redial(addr *net.UDPAddr) (*quic.Conn, error) {
	ctx, cancel := context.WithTimeout(p.ctx, redialFor)
	defer cancel()
	tlsConf := p.peerTLS()
	pause := newSleeper()
	defer pause.stop()
	for {
		conn, err := p.c.direct.Dial(ctx, addr, tlsConf, directPeerConfig())
		if err == nil {
			if err = confirmed(ctx, conn); err == nil {
				return conn, nil
			}
		}
		if ctx.Err() != nil || !pause.sleep(ctx, redialPause) {
			return nil, err
		}
	}
}

// confirmed waits a few round trips for the peer to refuse conn. Our
// handshake completes before the peer has checked our certificate: a peer
// just restarted may not know us as a source yet (control has not told it)
// and closes the connection at once; the next try comes after control has.
func confirmed(ctx context.Context, conn *quic.Conn) error {
	wait := min(max(3*conn.ConnectionStats().SmoothedRTT, 20*time.Millisecond), 300*time.Millisecond)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		_ = conn.CloseWithError(wire.ConnNormal, "re-dial timed out")
		return ctx.Err()
	case <-conn.Context().Done():
		return context.Cause(conn.Context())
	}
}

// tryRedial is holdDirect's first step: true when it handled the attempt
// (a connection, or a failure while no source wants the peer) and no punch
// is needed.
func (p *peer) tryRedial() bool {
	addr := p.recentDirect()
	if addr == nil {
		return false
	}
	log := p.c.log.With("peer", p.id.Short(), "remote", addr.String())
	conn, err := p.redial(addr)
	if err == nil {
		log.Info("direct path back at its last address, without punching")
		p.hold(conn, nil, pathDirect)
		return true
	}
	log.Debug("re-dial at the last direct address failed", "err", err)
	if p.ctx.Err() != nil || !p.wantsDirect() {
		// The peer is away (control no longer names it): try again when
		// it is back rather than punch toward nobody.
		p.hold(nil, err, pathDirect)
		return true
	}
	return false
}
