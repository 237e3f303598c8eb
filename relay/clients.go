package relay

import (
	"maps"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/relayconn"
)

// clientSession is one client's current connection to the relay.
type clientSession struct {
	id   identity.ID
	conn *quic.Conn
	// dest is where frames for this client go: its address and the relay
	// address it talks to. It is replaced, never modified, and only by the
	// forwarding path once the session is registered.
	dest atomic.Pointer[relayconn.Dest]
}

// clientTable is an immutable snapshot of the connected clients, swapped
// atomically (under Server.mu) so that forwarding reads it without locks.
// Clients connect, leave and move rarely; frames arrive all the time.
type clientTable struct {
	byAddr map[netip.AddrPort]*clientSession
	byID   map[identity.ID]*clientSession
}

func (t *clientTable) clone() *clientTable {
	return &clientTable{byAddr: maps.Clone(t.byAddr), byID: maps.Clone(t.byID)}
}

// register makes cs the session of its client and returns the one it
// replaces, if any.
func (s *Server) register(cs *clientSession) *clientSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.clients.Load().clone()
	old := t.byID[cs.id]
	if old != nil && t.byAddr[old.dest.Load().Addr] == old {
		delete(t.byAddr, old.dest.Load().Addr)
	}
	t.byID[cs.id] = cs
	t.byAddr[cs.dest.Load().Addr] = cs
	s.clients.Store(t)
	return old
}

func (s *Server) unregister(cs *clientSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.clients.Load().clone()
	if t.byID[cs.id] == cs {
		delete(t.byID, cs.id)
	}
	if addr := cs.dest.Load().Addr; t.byAddr[addr] == cs {
		delete(t.byAddr, addr)
	}
	s.clients.Store(t)
}

// move re-keys cs by its new address; the forwarding path calls it.
func (s *Server) move(cs *clientSession, to relayconn.Dest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.clients.Load()
	if t.byID[cs.id] != cs {
		return // gone or replaced meanwhile
	}
	t = t.clone()
	if old := cs.dest.Load().Addr; t.byAddr[old] == cs {
		delete(t.byAddr, old)
	}
	cs.dest.Store(&to)
	t.byAddr[to.Addr] = cs
	s.clients.Store(t)
	s.changed.Notify()
	s.log.Info("relay client moved", "client", cs.id.Short(), "to", to.Addr.String())
}

// remoteOf is the client's current address as quic-go sees it: it changes
// when quic-go has validated a migrated path.
func remoteOf(conn *quic.Conn) (netip.AddrPort, bool) {
	u, ok := conn.RemoteAddr().(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	a := u.AddrPort()
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), true
}

// localOf is the relay address the client's first packet was sent to
// (quic-go reports it when the socket is bound to a wildcard address), or
// invalid when quic-go does not know it.
func localOf(conn *quic.Conn) netip.Addr {
	u, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok || u.IP.IsUnspecified() {
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(u.IP)
	return a.Unmap()
}
