package relay

import (
	"net/netip"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/relayconn"
	"github.com/connetd/connetd/wire"
)

// route decides where a relay data frame goes (relayconn.Router). It runs
// on the socket's read path, for each frame of a batch: it takes no lock
// and allocates nothing unless a client moved.
func (s *Server) route(frame []byte, from netip.AddrPort, local netip.Addr) (relayconn.Dest, bool) {
	var to identity.ID
	copy(to[:], frame[1:wire.RelayFrameHeader])
	t := s.clients.Load()
	src := t.byAddr[from]
	if src == nil {
		src = s.findMoved(t, from, local)
	}
	dst := t.byID[to]
	switch {
	case src == nil:
		s.dropped[dropUnknownSender].Add(1)
		return relayconn.Dest{}, false
	case dst == nil:
		s.dropped[dropUnknownReceiver].Add(1)
		return relayconn.Dest{}, false
	}
	ctr := s.auth.Load().pairs[keyOf(src.id, to)]
	if ctr == nil {
		s.dropped[dropUnauthorized].Add(1)
		return relayconn.Dest{}, false
	}
	// The sender's frames tell which relay address it talks to; its own
	// frames are sent back from there. This changes at most when it moves.
	if d := src.dest.Load(); local.IsValid() && d.Local != local {
		src.dest.Store(&relayconn.Dest{Addr: d.Addr, Local: local})
	}
	copy(frame[1:wire.RelayFrameHeader], src.id[:])
	if s.cfg.ObserveForwarded != nil {
		s.cfg.ObserveForwarded(frame)
	}
	ctr.Add(int64(len(frame) - wire.RelayFrameHeader))
	// Checked on the forward path rather than by a ticker, so an idle relay
	// runs no timer; the compare-and-swap lets one packet per period win.
	// The clock is read once per 64 frames (it was 3% of the relay's CPU).
	if n := s.forwarded.Add(1); n%64 == 1 {
		now := time.Now().UnixNano()
		if last := s.trafficNotified.Load(); now-last >= int64(trafficNotify) && s.trafficNotified.CompareAndSwap(last, now) {
			s.changed.Notify()
		}
	}
	return *dst.dest.Load(), true
}

// scanInterval is the least time between two searches for a moved client.
// It bounds what frames from unknown addresses (stale, or forged) cost,
// and adds at most this much to the time a moved client's frames wait.
const scanInterval = 2 * time.Millisecond

// findMoved looks for a client whose connection quic-go has migrated to
// from. Frames identify their sender only by address, and only quic-go can
// vouch for an address: it switches a connection to a client's new address
// once it has validated the path (the client answered a PATH_CHALLENGE
// there), and conn.RemoteAddr() changes at that moment. quic-go has no
// callback for it, so the first frame from an address no client has is
// what makes the relay ask each connection for its address (an atomic
// load each); polling instead would drop a moved client's frames until
// the next poll. Frames that arrive before the path is validated are
// dropped: they could come from anyone.
func (s *Server) findMoved(t *clientTable, from netip.AddrPort, local netip.Addr) *clientSession {
	now := time.Now().UnixNano()
	last := s.lastScan.Load()
	if now-last < int64(scanInterval) || !s.lastScan.CompareAndSwap(last, now) {
		return nil
	}
	for _, cs := range t.byID {
		if addr, ok := remoteOf(cs.conn); ok && addr == from {
			if !local.IsValid() {
				local = cs.dest.Load().Local
			}
			s.move(cs, relayconn.Dest{Addr: from, Local: local})
			return cs
		}
	}
	return nil
}
