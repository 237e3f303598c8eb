package control

import (
	"maps"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// Remote sessions are the clients and relays of the other control nodes of
// a cluster (docs/ha.md), as their records in the shared store describe
// them. The registry keeps them beside its own sessions, so that building a
// client's peers, a relay's table and a punch works the same whoever holds
// the peer's connection. A remote session has no connection: what is sent
// to it goes by mail to the node that has one (session.send).

// remoteInfo is what a remote session has beyond a session.
type remoteInfo struct {
	node string
	post func(to *session, m wire.Message) // mail to the node; never blocks
}

// clientRecord is one client of some node as the shared store holds it.
type clientRecord struct {
	Node      string           `json:"node"`
	Cert      []byte           `json:"cert"`
	Observed  string           `json:"observed"`
	NAT       string           `json:"nat,omitempty"`
	Direct    []string         `json:"direct,omitempty"`
	Punch     bool             `json:"punch,omitempty"`
	Endpoints []endpointRecord `json:"endpoints,omitempty"`
}

type endpointRecord struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	Route string `json:"route"`
	Proto string `json:"proto,omitempty"`
}

// relayRecord is one relay linked to some node.
type relayRecord struct {
	Node string `json:"node"`
	Cert []byte `json:"cert"`
	Addr string `json:"addr"`
}

// clientRecordOf describes local session s for the store; nil when s is no
// longer the registered session of its client.
func (r *registry) clientRecordOf(id identity.ID, node string) *clientRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.clients[id]
	if s == nil {
		return nil
	}
	rec := &clientRecord{Node: node, Cert: s.cert, Observed: s.observed, NAT: s.nat, Direct: s.direct, Punch: s.punch}
	for k, ep := range s.endpoints {
		rec.Endpoints = append(rec.Endpoints, endpointRecord{Name: k.name, Role: k.role, Route: ep.route, Proto: ep.proto})
	}
	return rec
}

func (r *registry) relayRecordOf(id identity.ID, node string) *relayRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.relays[id]
	if s == nil || s.remote != nil {
		return nil
	}
	return &relayRecord{Node: node, Cert: s.cert, Addr: s.relayAddr}
}

// upsertRemoteClient installs or updates the remote client id. The session
// object of a client stays the same across updates, so that a punch in
// progress still finds it. While a local session of the same client exists
// the record is kept aside, not linked: the local one is authoritative
// until it ends.
func (r *registry) upsertRemoteClient(id identity.ID, rec *clientRecord, info *remoteInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.remote[id]
	if s == nil {
		s = newSession(id, rec.Cert, rec.Observed)
		r.remote[id] = s
	}
	if s.linked {
		r.dropEndpointsLocked(s)
	}
	s.remote = info
	s.cert, s.observed = rec.Cert, rec.Observed
	s.addr = observedAddr(rec.Observed)
	s.nat, s.direct, s.punch = validNAT(rec.NAT), rec.Direct, rec.Punch
	s.endpoints = map[epKey]endpointInfo{}
	for _, ep := range rec.Endpoints {
		s.endpoints[epKey{ep.Name, ep.Role}] = endpointInfo{route: ep.Route, proto: ep.Proto}
	}
	if local := r.clients[id]; local == nil {
		r.linkLocked(s)
	}
	r.changed.Notify()
}

// removeRemoteClient forgets the remote client id (its record is gone:
// its node withdrew it, or the node's lease expired).
func (r *registry) removeRemoteClient(id identity.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.remote[id]
	if s == nil {
		return
	}
	delete(r.remote, id)
	if s.linked {
		r.dropEndpointsLocked(s)
		s.linked = false
	}
	r.changed.Notify()
}

// linkLocked enters a remote session's endpoints into the registry.
func (r *registry) linkLocked(s *session) {
	s.linked = true
	eps := s.endpoints
	s.endpoints = map[epKey]endpointInfo{}
	for k, ep := range eps {
		r.enterLocked(s, k, ep)
	}
}

// enterLocked adds endpoint k of s to the registry and tells who cares.
func (r *registry) enterLocked(s *session, k epKey, ep endpointInfo) {
	s.endpoints[k] = ep
	byRole := r.endpoints[k.name]
	if byRole == nil {
		byRole = map[epKey]map[identity.ID]*session{}
		r.endpoints[k.name] = byRole
	}
	if byRole[k] == nil {
		byRole[k] = map[identity.ID]*session{}
	}
	byRole[k][s.id] = s
	r.pokeEndpointLocked(k.name)
}

// shadowRemoteLocked unlinks the remote session of a client that has just
// registered here: its record is older than this connection.
func (r *registry) shadowRemoteLocked(id identity.ID) {
	if s := r.remote[id]; s != nil && s.linked {
		eps := maps.Clone(s.endpoints) // withdrawing empties s.endpoints
		r.dropEndpointsLocked(s)
		s.endpoints = eps
		s.linked = false
	}
}

// unshadowRemoteLocked links the remote session of a client whose local
// session has just ended: the client moved to another node.
func (r *registry) unshadowRemoteLocked(id identity.ID) {
	if s := r.remote[id]; s != nil && !s.linked {
		r.linkLocked(s)
	}
}

func (r *registry) upsertRemoteRelay(id identity.ID, rec *relayRecord, info *remoteInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.relays[id]; s != nil && s.remote == nil {
		return // linked here; its own link is authoritative
	}
	s := newSession(id, rec.Cert, rec.Addr)
	s.relay, s.relayAddr, s.remote = true, rec.Addr, info
	r.relays[id] = s
	r.pokeAllLocked()
	r.changed.Notify()
}

func (r *registry) removeRemoteRelay(id identity.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.relays[id]; s == nil || s.remote == nil {
		return
	}
	delete(r.relays, id)
	r.pokeAllLocked()
	r.changed.Notify()
}

// remoteClient is the linked remote session of client id, or nil.
func (r *registry) remoteClient(id identity.ID) *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.remote[id]; s != nil && s.linked {
		return s
	}
	return nil
}

// remoteCounts tells how many remote clients each other node has.
func (r *registry) remoteCounts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, s := range r.remote {
		out[s.remote.node]++
	}
	return out
}

// remoteIDs lists the remote clients and relays, for a full resync.
func (r *registry) remoteIDs() (clients, relays []identity.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.remote {
		clients = append(clients, id)
	}
	for id, s := range r.relays {
		if s.remote != nil {
			relays = append(relays, id)
		}
	}
	return clients, relays
}

// moveSettle bounds how long a client that moved here from another node
// goes unpublished while it announces its endpoints again: its record here
// would otherwise replace the other node's with one that lacks endpoints
// not announced yet, and its peers would see them leave and come back.
const moveSettle = time.Second

// settled reports whether local client id may be published now; when not,
// wait is how long it may still wait. A client that moved from another
// node is held until it has announced as many endpoints as that node's
// record listed, or moveSettle has passed.
func (r *registry) settled(id identity.ID) (ok bool, wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, old := r.clients[id], r.remote[id]
	if s == nil || old == nil || len(s.endpoints) >= len(old.endpoints) {
		return true, 0
	}
	if left := moveSettle - time.Since(s.registered); left > 0 {
		return false, left
	}
	return true, 0
}
