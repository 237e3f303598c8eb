package control

import (
	"context"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/changes"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

type epKey struct {
	name, role string
}

// session is the registry's view of a connected client or relay. notify is
// poked (never blocking) when what the session should be told has changed;
// the session's writer then sends a fresh snapshot.
type session struct {
	id       identity.ID
	cert     []byte
	observed string
	addr     netip.Addr // observed, without the port: refusal logs are limited by it
	notify   chan struct{}
	close    func() // ends the session's connection
	punch    bool   // the client takes part in hole punching (hello.punch)

	// out feeds the session's writer (nil for relays, which get only
	// snapshots); stop ends the session when out overflows.
	out  chan wire.Message
	stop context.CancelCauseFunc

	// guarded by registry.mu
	nat   string
	token string // what it authenticated with, to find it on revocation
	relay bool

	direct    []string
	endpoints map[epKey]endpointInfo
	relayAddr string // relays only

	// What the session's writer should look at when poked: the endpoint
	// names whose peers may have changed, or everything (its first view,
	// a relay came or went). Building only those keeps a client that
	// announces thousands of names from making control rebuild and
	// compare its whole view once per name.
	dirty    map[string]struct{}
	dirtyAll bool

	// A client or relay of another control node (remote.go): nil for
	// our own. linked tells whether a remote client's endpoints are in
	// the registry (not while a local session of the same client is).
	remote *remoteInfo
	linked bool

	registered time.Time // when addClient took it
}

// endpointInfo is what a client announced of one of its endpoints.
type endpointInfo struct {
	route string
	proto string // as announced: "" (tcp) or wire.ProtoUDP
}

func newSession(id identity.ID, cert []byte, observed string) *session {
	return &session{id: id, cert: cert, observed: observed, notify: make(chan struct{}, 1), endpoints: map[epKey]endpointInfo{}}
}

// send queues m for the session's writer without blocking, so that a
// client that does not read never stalls whoever sends to it (another
// client's reader, a punch timer). A full queue ends its session instead of
// holding more memory for it.
func (s *session) send(m wire.Message) {
	if s.remote != nil {
		s.remote.post(s, m)
		return
	}
	if s.out == nil {
		return
	}
	select {
	case s.out <- m:
	default:
		s.stop(errNotReading)
	}
}

func (s *session) poke() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// registry is the control server's state: who is connected and what they
// announced.
type registry struct {
	mu        sync.Mutex
	clients   map[identity.ID]*session
	endpoints map[string]map[epKey]map[identity.ID]*session // name → (name, role) → clients
	relays    map[identity.ID]*session
	perToken  map[string]int           // live client sessions by token
	remote    map[identity.ID]*session // clients of other control nodes

	// local is told of every change to a session of ours that the other
	// nodes of a cluster must learn (set once by the cluster, before
	// serving; called with mu held, so it must not call back).
	local func(id identity.ID, relay bool)

	changed changes.Signal // clients, endpoints or relays changed (for status)
}

func newRegistry() *registry {
	return &registry{
		clients:   map[identity.ID]*session{},
		endpoints: map[string]map[epKey]map[identity.ID]*session{},
		relays:    map[identity.ID]*session{},
		perToken:  map[string]int{},
		remote:    map[identity.ID]*session{},
		local:     func(identity.ID, bool) {},
	}
}

// addClient registers s, returning a previous session of the same client
// (a reconnect racing its old connection), which the caller closes. It
// refuses s if its token holds perToken sessions already; one that s
// replaces does not count.
func (r *registry) addClient(s *session, perToken int) (*session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.clients[s.id]
	n := r.perToken[s.token]
	if old != nil && old.token == s.token {
		n--
	}
	if n >= perToken {
		return nil, tooMany("too many sessions for this token: at most %d", perToken)
	}
	if old != nil {
		r.dropEndpointsLocked(old)
		r.untokenLocked(old)
	}
	r.shadowRemoteLocked(s.id)
	s.registered = time.Now()
	r.clients[s.id] = s
	r.perToken[s.token]++
	s.dirtyAll = true
	s.poke()
	r.local(s.id, false)
	r.changed.Notify()
	return old, nil
}

func (r *registry) untokenLocked(s *session) {
	if r.perToken[s.token]--; r.perToken[s.token] <= 0 {
		delete(r.perToken, s.token)
	}
}

func (r *registry) removeClient(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.clients[s.id] != s {
		return
	}
	delete(r.clients, s.id)
	r.untokenLocked(s)
	r.dropEndpointsLocked(s)
	r.unshadowRemoteLocked(s.id)
	r.local(s.id, false)
	r.changed.Notify()
}

func (r *registry) dropEndpointsLocked(s *session) {
	for k := range s.endpoints {
		r.withdrawLocked(s, k)
	}
}

// announce adds or updates an endpoint of s, unless it would exceed l.
func (r *registry) announce(s *session, name, role string, ep endpointInfo, l Limits) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := epKey{name, role}
	if err := r.admitLocked(s, k, l); err != nil {
		return err
	}
	r.enterLocked(s, k, ep)
	r.local(s.id, false)
	r.changed.Notify()
	return nil
}

func (r *registry) withdraw(s *session, name, role string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.withdrawLocked(s, epKey{name, role})
	r.local(s.id, false)
}

func (r *registry) withdrawLocked(s *session, k epKey) {
	delete(s.endpoints, k)
	if byRole := r.endpoints[k.name]; byRole != nil {
		if m := byRole[k]; m != nil && m[s.id] == s {
			delete(m, s.id)
			if len(m) == 0 {
				delete(byRole, k)
			}
		}
		if len(byRole) == 0 {
			delete(r.endpoints, k.name)
		}
	}
	r.pokeEndpointLocked(k.name)
	r.changed.Notify()
}

func (r *registry) setDirect(s *session, direct []string, nat string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.direct, s.nat = direct, validNAT(nat)
	for k := range s.endpoints {
		r.pokeEndpointLocked(k.name)
	}
	r.local(s.id, false)
}

// pokeEndpointLocked tells everyone whose view of endpoint name may have
// changed: its clients and all relays.
func (r *registry) pokeEndpointLocked(name string) {
	for _, m := range r.endpoints[name] {
		for _, s := range m {
			if s.dirty == nil {
				s.dirty = map[string]struct{}{}
			}
			s.dirty[name] = struct{}{}
			s.poke()
		}
	}
	for _, rs := range r.relays {
		rs.poke()
	}
}

// sessions lists every connected client and relay.
func (r *registry) sessions() []*session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*session, 0, len(r.clients)+len(r.relays))
	for _, s := range r.clients {
		out = append(out, s)
	}
	for _, s := range r.relays {
		if s.token != "" {
			out = append(out, s)
		}
	}
	return out
}

func (r *registry) addRelay(s *session, addr string) *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.relays[s.id]
	if old != nil && old.remote != nil {
		old = nil // another node's record of it: this link supersedes it
	}
	s.relayAddr = addr
	r.relays[s.id] = s
	r.pokeAllLocked()
	r.local(s.id, true)
	r.changed.Notify()
	return old
}

func (r *registry) removeRelay(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.relays[s.id] != s {
		return
	}
	delete(r.relays, s.id)
	r.pokeAllLocked()
	r.local(s.id, true)
	r.changed.Notify()
}

func (r *registry) pokeAllLocked() {
	for _, s := range r.clients {
		s.dirtyAll = true
		s.poke()
	}
	for _, s := range r.relays {
		s.poke()
	}
}

func counterpart(role string) string {
	if role == restrict.RoleSource {
		return restrict.RoleDestination
	}
	return restrict.RoleSource
}

// clientView is what a client should currently know of what changed since
// the last call: the peers of its endpoints marked dirty (all of them the
// first time, or after relays changed), and the relays.
func (r *registry) clientView(s *session) (peers []wire.Peers, relays wire.Relays) {
	r.mu.Lock()
	defer r.mu.Unlock()
	all, dirty := s.dirtyAll, s.dirty
	s.dirtyAll, s.dirty = false, nil
	for k := range s.endpoints {
		if _, ok := dirty[k.name]; !ok && !all {
			continue
		}
		p := wire.Peers{Endpoint: k.name, Role: k.role, Peers: []wire.Peer{}}
		other := epKey{k.name, counterpart(k.role)}
		for id, o := range r.endpoints[k.name][other] {
			if id == s.id {
				continue // a client never peers with itself
			}
			p.Peers = append(p.Peers, wire.Peer{ID: id, Cert: o.cert, Direct: probeTargets(o, s), Route: o.endpoints[other].route, NAT: o.nat, Proto: o.endpoints[other].proto})
		}
		sort.Slice(p.Peers, func(i, j int) bool { return p.Peers[i].ID.String() < p.Peers[j].ID.String() })
		peers = append(peers, p)
	}
	sort.Slice(peers, func(i, j int) bool {
		if peers[i].Endpoint != peers[j].Endpoint {
			return peers[i].Endpoint < peers[j].Endpoint
		}
		return peers[i].Role < peers[j].Role
	})
	relays.Relays = []wire.Relay{}
	for id, rs := range r.relays {
		relays.Relays = append(relays.Relays, wire.Relay{ID: id, Addr: rs.relayAddr, Cert: rs.cert})
	}
	sort.Slice(relays.Relays, func(i, j int) bool { return relays.Relays[i].ID.String() < relays.Relays[j].ID.String() })
	return peers, relays
}

func usesRelay(route string) bool { return route == wire.RouteAny || route == wire.RouteRelay }

// relayView is the authorization table every relay gets: for each endpoint,
// the sources and destinations that allow the relay route.
func (r *registry) relayView() wire.RelayAuth {
	r.mu.Lock()
	defer r.mu.Unlock()
	auth := wire.RelayAuth{Endpoints: []wire.RelayEndpoint{}}
	for name, byRole := range r.endpoints {
		ep := wire.RelayEndpoint{Endpoint: name}
		for id, s := range byRole[epKey{name, restrict.RoleSource}] {
			if usesRelay(s.endpoints[epKey{name, restrict.RoleSource}].route) {
				ep.Sources = append(ep.Sources, id)
			}
		}
		for id, s := range byRole[epKey{name, restrict.RoleDestination}] {
			if usesRelay(s.endpoints[epKey{name, restrict.RoleDestination}].route) {
				ep.Destinations = append(ep.Destinations, id)
			}
		}
		if len(ep.Sources) == 0 || len(ep.Destinations) == 0 {
			continue
		}
		less := func(a, b identity.ID) int { return slices.Compare(a[:], b[:]) }
		slices.SortFunc(ep.Sources, less)
		slices.SortFunc(ep.Destinations, less)
		auth.Endpoints = append(auth.Endpoints, ep)
	}
	sort.Slice(auth.Endpoints, func(i, j int) bool { return auth.Endpoints[i].Endpoint < auth.Endpoints[j].Endpoint })
	return auth
}

// status reports the registry; tokens are the configured client tokens,
// to tell each client's token index.
func (r *registry) status(tokens []string) Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Clients: []ClientStatus{}, Endpoints: []EndpointStatus{}, Relays: []RelayStatus{}}
	for id, s := range r.clients {
		cs := ClientStatus{ID: id.String(), Addr: s.observed, Endpoints: []string{}, TokenIndex: tokenIndex(tokens, s.token)}
		for k := range s.endpoints {
			cs.Endpoints = append(cs.Endpoints, k.role+":"+k.name)
		}
		sort.Strings(cs.Endpoints)
		st.Clients = append(st.Clients, cs)
	}
	for name, byRole := range r.endpoints {
		st.Endpoints = append(st.Endpoints, EndpointStatus{
			Name:         name,
			Sources:      len(byRole[epKey{name, restrict.RoleSource}]),
			Destinations: len(byRole[epKey{name, restrict.RoleDestination}]),
		})
	}
	for id, s := range r.relays {
		st.Relays = append(st.Relays, RelayStatus{ID: id.String(), Addr: s.relayAddr})
	}
	sort.Slice(st.Clients, func(i, j int) bool { return st.Clients[i].ID < st.Clients[j].ID })
	sort.Slice(st.Endpoints, func(i, j int) bool { return st.Endpoints[i].Name < st.Endpoints[j].Name })
	sort.Slice(st.Relays, func(i, j int) bool { return st.Relays[i].ID < st.Relays[j].ID })
	return st
}

// validNAT keeps only the NAT kinds this version knows.
func validNAT(nat string) string {
	switch nat {
	case wire.NATNone, wire.NATEasy, wire.NATHard:
		return nat
	}
	return wire.NATUnknown
}
