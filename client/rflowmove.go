package client

import (
	"crypto/tls"
	"math/rand/v2"

	"context"
	"errors"
	"fmt"
	"time"

	"github.com/connetd/connetd/identity"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/wire"
)

// resumable reports whether conn carries resumable flows: both ends
// offered ALPNPeerResumable.
func resumable(conn *quic.Conn) bool {
	return conn.ConnectionState().TLS.NegotiatedProtocol == wire.ALPNPeerResumable
}

// peerALPNs is what both ends of a peer connection offer, newest first.
var peerALPNs = []string{wire.ALPNPeerResumable, wire.ALPNPeer}

// relocate finds the flow a new stream: over prefer when given (a better
// path came up), else over the peer's best live path, waiting for one up
// to resumeWait. The source only.
func (f *rflow) relocate(prefer *quic.Conn, preferPa path) {
	retry := newSleeper()
	defer retry.stop()
	var failed *quic.Conn // where the last resume failed: another path first
	for {
		changed := f.p.c.changed.C()
		conn, pa := prefer, preferPa
		prefer = nil
		if conn == nil || conn.Context().Err() != nil || f.p.isStalled(conn) {
			conn, pa = f.p.bestPath(f.name, failed)
		}
		// Whether to stop is decided under the lock that detachLocked
		// takes: a detach right after must find recovering false and
		// start a new relocate, or the flow would wait for nothing.
		f.mu.Lock()
		if f.ended {
			f.recovering = false
			f.mu.Unlock()
			return
		}
		if f.st != nil && (conn == nil || conn == f.conn || (pa >= f.pa && !f.p.isStalled(f.conn))) {
			if !f.recheck {
				f.recovering = false
				f.mu.Unlock()
				return
			}
			// A better path came up since bestPath looked: look again.
			f.recheck = false
			f.mu.Unlock()
			continue
		}
		lostAt := f.lostAt
		f.mu.Unlock()
		if conn != nil {
			err := f.resumeOn(conn, pa)
			if err == nil || errors.Is(err, errFlowEnded) {
				continue // the check above ends the loop
			}
			f.log.Debug("flow resume failed", "path", pa.String(), "err", err)
			failed = conn
			if !retry.sleep(f.ctx, 200*time.Millisecond) {
				return // the flow is ending
			}
			continue
		}
		// Detached, and no path: wait for one, up to resumeWait after the
		// stream was lost.
		wait := time.NewTimer(time.Until(lostAt.Add(resumeWait)))
		select {
		case <-changed:
		case <-f.ctx.Done():
			wait.Stop()
			return
		case <-wait.C:
			f.mu.Lock()
			if f.st == nil && time.Since(f.lostAt) >= resumeWait {
				f.abortLocked("no path to resume over within " + resumeWait.String())
			}
			f.mu.Unlock()
		}
		wait.Stop()
	}
}

// resumeOn moves the flow onto a new stream of conn.
func (f *rflow) resumeOn(conn *quic.Conn, pa path) error {
	f.moveMu.Lock()
	defer f.moveMu.Unlock()
	ctx, cancel := context.WithTimeout(f.ctx, resumeAnswer)
	defer cancel()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	received, ok := f.quiesce()
	if !ok {
		abort(st, wire.StreamAborted)
		return errFlowEnded
	}
	// A resume that fails leaves the flow: its stream is dropped with
	// StreamMoved, which the destination takes as "not this stream", not
	// as the end of the flow, should it have taken the resume already.
	_ = st.SetDeadline(time.Now().Add(resumeAnswer))
	if err := wire.Write(st, &wire.Resume{Flow: f.id, Received: received}); err != nil {
		abort(st, wire.StreamMoved)
		return err
	}
	m, err := wire.Read(st, wire.ResumeStream)
	if err != nil {
		abort(st, wire.StreamMoved)
		var se *quic.StreamError
		if errors.As(err, &se) && se.Remote && se.ErrorCode == wire.StreamUnknownFlow {
			f.abort("the destination no longer holds the flow")
			return errFlowEnded
		}
		return fmt.Errorf("read resumed: %w", err)
	}
	_ = st.SetDeadline(time.Time{})
	return f.attachResumed(st, conn, pa, m.(*wire.Resumed).Received)
}

// serveResume takes a source's Resume of one of our destination flows.
func (p *peer) serveResume(conn *quic.Conn, st *quic.Stream, pa path, m *wire.Resume) {
	f := p.flow(rflowKey{m.Flow, false})
	if f == nil {
		f = p.awaitExpected(m.Flow)
	}
	if f == nil || !resumable(conn) {
		abort(st, wire.StreamUnknownFlow)
		return
	}
	if r, ok := p.sourceRoutes(f.name); !ok || !r.allow(pa) {
		f.log.Warn("refusing resume on a path the routes do not allow", "path", pa.String())
		abort(st, wire.StreamBadRequest)
		return
	}
	f.moveMu.Lock()
	defer f.moveMu.Unlock()
	received, ok := f.quiesce()
	if !ok {
		abort(st, wire.StreamUnknownFlow)
		return
	}
	_ = st.SetWriteDeadline(time.Now().Add(resumeAnswer))
	if err := wire.Write(st, &wire.Resumed{Received: received}); err != nil {
		abort(st, wire.StreamMoved) // the flow waits for another resume
		return
	}
	_ = st.SetWriteDeadline(time.Time{})
	_ = f.attachResumed(st, conn, pa, m.Received)
}

// expectFlow notes that a Connect of flow id is being served. The source
// may resume the flow before it is registered: its first path died while
// our service was being dialed (an on-demand unit starting takes
// seconds). That Resume waits for the flow rather than being told it is
// unknown. done forgets the expectation if addFlow has not.
func (p *peer) expectFlow(id uint64) (done func()) {
	ch := make(chan struct{})
	p.mu.Lock()
	if p.expected == nil {
		p.expected = map[uint64]chan struct{}{}
	}
	if old := p.expected[id]; old != nil {
		close(old)
	}
	p.expected[id] = ch
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		if p.expected[id] == ch {
			delete(p.expected, id)
			close(ch)
		}
		p.mu.Unlock()
	}
}

// awaitExpected waits up to resumeAnswer for the expected flow id to be
// registered; nil if it is not expected or did not come.
func (p *peer) awaitExpected(id uint64) *rflow {
	p.mu.Lock()
	ch := p.expected[id]
	p.mu.Unlock()
	if ch == nil {
		return nil
	}
	t := time.NewTimer(resumeAnswer)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-p.ctx.Done():
	}
	return p.flow(rflowKey{id, false})
}

// addFlow registers f with its peer; false if the peer is closing or the
// ID is taken.
func (p *peer) addFlow(f *rflow) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !f.opener {
		if ch := p.expected[f.id]; ch != nil {
			delete(p.expected, f.id)
			defer close(ch) // once f is in flows
		}
	}
	if p.closed || p.flows[f.key()] != nil {
		return false
	}
	if p.flows == nil {
		p.flows = map[rflowKey]*rflow{}
	}
	p.flows[f.key()] = f
	return true
}

func (p *peer) removeFlow(f *rflow) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.flows[f.key()] == f {
		delete(p.flows, f.key())
	}
}

func (p *peer) flow(k rflowKey) *rflow {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.flows[k]
}

// openedFlows lists the flows we opened to the peer.
func (p *peer) openedFlows() []*rflow {
	p.mu.Lock()
	defer p.mu.Unlock()
	var fs []*rflow
	for k, f := range p.flows {
		if k.opener {
			fs = append(fs, f)
		}
	}
	return fs
}

// moveFlows moves every flow we opened that is not on a direct path onto
// conn, a direct path that just came up or recovered.
func (p *peer) moveFlows(conn *quic.Conn) {
	for _, f := range p.openedFlows() {
		if f.currentPath() != pathDirect {
			f.moveTo(conn, pathDirect)
		}
	}
}

// evacuate moves the flows we opened off conn, whose path stalled.
func (p *peer) evacuate(conn *quic.Conn) {
	for _, f := range p.openedFlows() {
		if f.flowOn(conn) {
			f.moveTo(nil, pathNone)
		}
	}
}

// bestPath is the peer's best live connection for a new stream of our
// source name; avoid is taken only when there is no other (a path that
// is up but does not carry a resume must not hold a flow until it times
// out).
func (p *peer) bestPath(name string, avoid *quic.Conn) (*quic.Conn, path) {
	conn, pa, _ := p.pathFor(name, avoid)
	if conn == nil && avoid != nil {
		conn, pa, _ = p.pathFor(name, nil)
	}
	return conn, pa
}

func (p *peer) isStalled(conn *quic.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalled[conn]
}

// Path health: a connection we dialed that received nothing for
// stallAfter (while keep-alives go every peerKeepAlive) is stalled: new
// TCP connections avoid it and its flows move to another path. It is not
// closed: the QUIC idle timeout does that, and a path that comes back
// before takes its flows back (a direct one).
const (
	stallAfter    = 750 * time.Millisecond
	stallCheck    = 100 * time.Millisecond
	peerKeepAlive = 250 * time.Millisecond
)

// watchHealth marks conn stalled and recovered until it ends.
func (p *peer) watchHealth(conn *quic.Conn, pa path) {
	tick := time.NewTicker(stallCheck)
	defer tick.Stop()
	last := conn.ConnectionStats().PacketsReceived
	lastAt := time.Now()
	stalled := false
	defer func() {
		p.mu.Lock()
		delete(p.stalled, conn)
		p.mu.Unlock()
	}()
	for {
		select {
		case <-conn.Context().Done():
			return
		case <-p.ctx.Done():
			return
		case now := <-tick.C:
			n := conn.ConnectionStats().PacketsReceived
			if n != last {
				last, lastAt = n, now
				if stalled {
					stalled = false
					p.setStalled(conn, false)
					p.c.log.Info("peer path recovered", "peer", p.id.Short(), "path", pa.String())
					if pa == pathDirect {
						p.moveFlows(conn)
					}
				}
				continue
			}
			if !stalled && now.Sub(lastAt) >= stallAfter {
				stalled = true
				p.setStalled(conn, true)
				p.c.log.Info("peer path stalled: moving its flows", msgid.PeerPathLost.Attr(), "peer", p.id.Short(),
					"path", pa.String(), "silent", now.Sub(lastAt).Round(time.Millisecond).String())
				p.evacuate(conn)
				if pa == pathRelay {
					// A relay that went silent was most likely restarted or
					// lost: its connection would come back only after
					// QUIC's backed-off retransmissions, a new one as soon
					// as the relay link is up again.
					_ = conn.CloseWithError(wire.ConnNormal, "relay path stalled")
					return
				}
			}
		}
	}
}

func (p *peer) setStalled(conn *quic.Conn, on bool) {
	p.mu.Lock()
	if on {
		if p.stalled == nil {
			p.stalled = map[*quic.Conn]bool{}
		}
		p.stalled[conn] = true
	} else {
		delete(p.stalled, conn)
	}
	p.mu.Unlock()
	p.c.changed.Notify()
}

// peerTLS is the TLS configuration for dialing the peer.
func (p *peer) peerTLS() *tls.Config {
	conf := p.c.id.ClientTLS(wire.ALPNPeer, func(id identity.ID) bool { return id == p.id })
	conf.NextProtos = p.c.peerProtos
	return conf
}

// peerServerTLS is the TLS configuration for accepting sources.
func (c *Client) peerServerTLS() *tls.Config {
	conf := c.id.ServerTLS(wire.ALPNPeer, c.isAllowedSource)
	conf.NextProtos = c.peerProtos
	return conf
}

// newFlowID picks a flow's ID: random, so that IDs of a restarted source
// do not meet flows its peer still holds from before.
func newFlowID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}
