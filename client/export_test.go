package client

import (
	"time"

	"github.com/connetd/connetd/wire"
	"github.com/quic-go/quic-go"
)

// AdmitPeer hands conn to admitPeer as the accept loops do once TLS
// pinning has let its peer in. Pinning and admitPeer ask the same
// question (is the peer a source of ours?), at the handshake and at the
// accept: admitPeer refuses a peer that stopped being a source in between.
// Tests reach that case by accepting the connection themselves.
func (c *Client) AdmitPeer(conn *quic.Conn) { c.admitPeer(conn, pathDirect) }

// DropDirectPaths closes the direct connections the client dialed, as a
// dead path would end them, waits until they are closed, and dials none
// for hold, so tests can watch flows move to the relay (on loopback a new
// path is punched at once).
func (c *Client) DropDirectPaths(hold time.Duration) {
	c.mu.Lock()
	var conns []*quic.Conn
	for _, p := range c.peers {
		p.mu.Lock()
		p.nextDirect = time.Now().Add(hold)
		if p.directConn != nil {
			conns = append(conns, p.directConn)
		}
		p.mu.Unlock()
	}
	c.mu.Unlock()
	for _, conn := range conns {
		_ = conn.CloseWithError(0, "test: path dropped")
	}
	// Closing completes in the connection's own goroutine: until it has,
	// a datagram sent on it is queued and lost without an error, as on a
	// path that died unnoticed. Tests want the dead path noticed.
	for _, conn := range conns {
		select {
		case <-conn.Context().Done():
		case <-time.After(time.Second):
		}
	}
}

// OfferPeerV1Only makes the client offer only connetd-peer/1 on peer
// connections, as a client from before resumable flows; before Run.
func (c *Client) OfferPeerV1Only() { c.peerProtos = []string{wire.ALPNPeer} }

// ForgetFlows drops every resumable flow the client holds from its
// peers' tables, as a restarted client would have none: a resume of one
// of them is refused. The flows go on until end is called, which aborts
// them (a restarted client's are gone).
func (c *Client) ForgetFlows() (end func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var forgotten []*rflow
	for _, p := range c.peers {
		p.mu.Lock()
		for _, f := range p.flows {
			forgotten = append(forgotten, f)
		}
		p.flows = nil
		p.mu.Unlock()
	}
	return func() {
		for _, f := range forgotten {
			f.abort("test: forgotten")
		}
	}
}

// AckInLastWrite makes each flow this process opened take, once more,
// the peer's acknowledgement of everything it sent, FIN included, at the
// worst moment: after reading the peer's last bytes with its FIN, before
// writing them to TCP. A peer's record can come then (it travels on a
// stream of its own). undo ends it; before Run, after Close.
func AckInLastWrite() (undo func()) {
	testHookStreamIn = func(f *rflow) {
		f.mu.Lock()
		fin := f.opener && f.peerEOF && f.tcpEOF && f.finSent
		end := f.buf.End()
		f.mu.Unlock()
		if fin {
			f.acked(wire.FlowAck{Flow: f.id, Received: end, FIN: true})
		}
	}
	return func() { testHookStreamIn = nil }
}
