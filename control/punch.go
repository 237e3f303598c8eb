package control

import (
	"crypto/rand"
	"sync"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

// Control coordinates hole punching: a source asks for an attempt toward
// one of its destinations, control sends both a punch message with the
// other's candidates and a fresh nonce, and once both have answered
// punch_ready (their low-TTL opening packets are out) it sends both
// punch_go at the same moment. The barrier is what keeps one side's
// full-TTL probes from reaching the other's NAT before that NAT has opened
// (docs/nat-traversal.md).
const (
	// punchReadyWait is how long control waits for both sides to be ready
	// before it lets the attempt go anyway.
	punchReadyWait = 2 * time.Second
	// maxPunchesPerClient bounds the attempts one client may have open.
	maxPunchesPerClient = 16
)

type punchState struct {
	nonce [wire.PunchNonceLen]byte
	a, b  *session
	ready map[*session]bool
	timer *time.Timer
	done  bool
}

// punches is the set of attempts waiting for their barrier.
type punches struct {
	mu     sync.Mutex
	byKey  map[[wire.PunchNonceLen]byte]*punchState
	byPeer map[*session]int
}

// stopAll drops every waiting attempt (the server is stopping), so that no
// timer outlives it.
func (p *punches) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, ps := range p.byKey {
		ps.done = true
		ps.timer.Stop()
		delete(p.byKey, k)
	}
	clear(p.byPeer)
}

func newPunches() *punches {
	return &punches{byKey: map[[wire.PunchNonceLen]byte]*punchState{}, byPeer: map[*session]int{}}
}

// isSourceOf reports whether src announced a source of an endpoint that dst
// offers as a destination, with routes that allow a direct path.
func (r *registry) isSourceOf(src, dst *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, ep := range src.endpoints {
		if k.role != restrict.RoleSource || ep.route == wire.RouteRelay {
			continue
		}
		if theirs, ok := dst.endpoints[epKey{k.name, restrict.RoleDestination}]; ok && theirs.route != wire.RouteRelay {
			return true
		}
	}
	return false
}

func (r *registry) client(id identity.ID) *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clients[id]
}

// punchView is what to is told of its peer s for an attempt.
func (r *registry) punchView(s, to *session) wire.Punch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return wire.Punch{Peer: s.id, Direct: probeTargets(s, to), NAT: s.nat}
}

// startPunch handles a punch_request from src. Requests for peers that are
// not one of src's direct-capable destinations are ignored.
func (s *Server) startPunch(src *session, peer identity.ID, spray string) {
	dst := s.reg.client(peer)
	if dst == nil {
		dst = s.reg.remoteClient(peer) // held by another node of a cluster
	}
	if dst == nil || dst == src || !src.punch || !dst.punch || !s.reg.isSourceOf(src, dst) {
		return
	}
	ps := &punchState{a: src, b: dst, ready: map[*session]bool{}}
	if _, err := rand.Read(ps.nonce[:]); err != nil {
		return
	}
	p := s.punches
	p.mu.Lock()
	if p.byPeer[src] >= maxPunchesPerClient || p.byPeer[dst] >= maxPunchesPerClient {
		p.mu.Unlock()
		return
	}
	p.byKey[ps.nonce] = ps
	p.byPeer[src]++
	p.byPeer[dst]++
	ps.timer = time.AfterFunc(punchReadyWait, func() { s.punchGo(ps) })
	p.mu.Unlock()

	toA, toB := s.reg.punchView(dst, src), s.reg.punchView(src, dst)
	toA.Nonce, toB.Nonce = ps.nonce[:], ps.nonce[:]
	toA.Dial = true
	switch spray {
	case wire.PunchSpraySource:
		toA.Mode, toB.Mode = wire.PunchModeSpray, wire.PunchModeRandom
	case wire.PunchSprayDestination:
		toA.Mode, toB.Mode = wire.PunchModeRandom, wire.PunchModeSpray
	}
	src.send(&toA)
	dst.send(&toB)
}

// punchReady records that sess has opened; the second ready releases both.
func (s *Server) punchReady(sess *session, nonce []byte) {
	if len(nonce) != wire.PunchNonceLen {
		return
	}
	p := s.punches
	p.mu.Lock()
	ps := p.byKey[[wire.PunchNonceLen]byte(nonce)]
	if ps == nil || (sess != ps.a && sess != ps.b) {
		p.mu.Unlock()
		if c := s.cluster.Load(); ps == nil && c != nil && sess.remote == nil {
			c.forwardReady(sess, nonce) // the punch is another node's
		}
		return
	}
	ps.ready[sess] = true
	both := len(ps.ready) == 2
	p.mu.Unlock()
	if both {
		s.punchGo(ps)
	}
}

func (s *Server) punchGo(ps *punchState) {
	p := s.punches
	p.mu.Lock()
	if ps.done {
		p.mu.Unlock()
		return
	}
	ps.done = true
	ps.timer.Stop()
	delete(p.byKey, ps.nonce)
	for _, x := range []*session{ps.a, ps.b} {
		if p.byPeer[x]--; p.byPeer[x] <= 0 {
			delete(p.byPeer, x)
		}
	}
	p.mu.Unlock()
	// send only queues, so neither side's go waits on the other's stream.
	ps.a.send(&wire.PunchGo{Nonce: ps.nonce[:]})
	ps.b.send(&wire.PunchGo{Nonce: ps.nonce[:]})
}
