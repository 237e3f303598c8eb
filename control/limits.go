package control

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/internal/ratelimit"
	"github.com/connetd/connetd/wire"
)

// Limits bound the work one authenticated client can make control (and
// the relays, which get the pairs control makes) do. A zero field takes
// its default.
type Limits struct {
	// SessionsPerToken bounds the live sessions of one client token: every
	// session costs a connection, a writer and a place in every snapshot.
	SessionsPerToken int
	// EndpointsPerClient bounds the (name, role) pairs one session announces.
	EndpointsPerClient int
	// PeersPerEndpoint bounds the clients of one (name, role): K sources
	// and K destinations of a name make K² pairs, in peers messages and in
	// every relay's table.
	PeersPerEndpoint int
	// PunchesPerMinute bounds the punch requests of one client: each one
	// makes control send to two clients and both of them send probes.
	PunchesPerMinute int
}

// Defaults, generous for honest use.
const (
	// A token is usually one machine, or a few sharing a configuration;
	// each holds one session (two for a moment while it reconnects).
	DefaultSessionsPerToken = 16
	// A client exposing a whole host's services needs tens.
	DefaultEndpointsPerClient = 256
	// 64 clients on each side of a name make at most 64×64 = 4096 pairs,
	// each peer entry of a peers message is a few KiB (certificate and up
	// to 33 candidates), so the largest peers message stays near 200 KiB,
	// far below the 4 MiB frame limit, and one change to a name costs
	// control 64 such messages, not thousands.
	DefaultPeersPerEndpoint = 64
	// A client punches toward a peer when it first needs a direct path and
	// again after failures, seconds apart: one a second on average is
	// plenty, with a burst for a client that starts with many peers.
	DefaultPunchesPerMinute = 60
	maxPunchBurst           = 16
	// punchClientsTracked bounds the punch limiter's table; a client whose
	// bucket has refilled is forgotten first.
	punchClientsTracked = 1 << 16
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.SessionsPerToken, DefaultSessionsPerToken)
	def(&l.EndpointsPerClient, DefaultEndpointsPerClient)
	def(&l.PeersPerEndpoint, DefaultPeersPerEndpoint)
	def(&l.PunchesPerMinute, DefaultPunchesPerMinute)
	return l
}

// limitState is the limits in force and the punch limiter built for them.
type limitState struct {
	Limits
	punches *ratelimit.Keyed[identity.ID]
}

func newPunchLimiter(perMinute int) *ratelimit.Keyed[identity.ID] {
	return ratelimit.NewKeyed[identity.ID](float64(perMinute)/60, min(maxPunchBurst, perMinute), punchClientsTracked)
}

// SetLimits replaces the limits. They apply to the next hello, announce
// and punch request; sessions and endpoints already admitted stay. A new
// punch rate starts every client with a full burst.
func (s *Server) SetLimits(l Limits) {
	l = l.withDefaults()
	next := &limitState{Limits: l}
	if old := s.limits.Load(); old != nil && old.PunchesPerMinute == l.PunchesPerMinute {
		next.punches = old.punches
	} else {
		next.punches = newPunchLimiter(l.PunchesPerMinute)
	}
	s.limits.Store(next)
}

// limitError is a refusal for exceeding a limit; its text is what the
// client is told.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

func tooMany(format string, n int) error { return &limitError{fmt.Sprintf(format, n)} }

// admitLocked checks that s may announce k. Announcing again what s has
// (a new route) is always allowed.
func (r *registry) admitLocked(s *session, k epKey, l Limits) error {
	if _, ok := s.endpoints[k]; ok {
		return nil
	}
	if len(s.endpoints) >= l.EndpointsPerClient {
		return tooMany("too many endpoints for this client: at most %d", l.EndpointsPerClient)
	}
	if len(r.endpoints[k.name][k]) >= l.PeersPerEndpoint {
		return tooMany("too many clients on this endpoint name and role: at most %d", l.PeersPerEndpoint)
	}
	return nil
}

// refuseAnnounce tells the client why its announce was refused and logs
// it (at most a few lines per address and 10 s).
func (s *Server) refuseAnnounce(sess *session, m *wire.Announce, err error, log *slog.Logger) {
	s.refusals.add(RefusedEndpointLimit)
	if s.gate.shouldLog(sess.addr) {
		log.Warn("endpoint refused: "+err.Error(), msgid.EndpointRefused.Attr(), "endpoint", m.Endpoint, "role", m.Role)
	}
	sess.send(&wire.Error{Code: wire.CodeLimitExceeded, Message: err.Error(), Endpoint: m.Endpoint, Role: m.Role})
}

// allowPunch counts one punch request of sess against its client's rate,
// and refuses it with an error when the client is over.
func (s *Server) allowPunch(sess *session, log *slog.Logger) bool {
	l := s.limits.Load()
	if l.punches.Allow(sess.id, time.Now()) {
		return true
	}
	s.refusals.add(RefusedPunchRate)
	msg := fmt.Sprintf("too many punch requests: at most %d a minute", l.PunchesPerMinute)
	if s.gate.shouldLog(sess.addr) {
		log.Warn("punch request refused: " + msg)
	}
	sess.send(&wire.Error{Code: wire.CodeLimitExceeded, Message: msg})
	return false
}
