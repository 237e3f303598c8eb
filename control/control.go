// Package control is the control server: it authenticates clients and relays
// by token, keeps the registry of endpoints, and tells every client who its
// peers are (their certificates and candidate addresses) and which relays to
// use, and every relay which clients it may splice.
package control

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"

	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

// Config is what a control server needs; the daemon builds it from the
// config file.
type Config struct {
	Cert tls.Certificate // presented to clients and relays
	Auth
	Limits

	// NodeName names this control node in its welcomes; clients and
	// relays of a control cluster show which node they use.
	NodeName string

	Logger *slog.Logger
}

// Auth is who may connect: the part of the configuration a reload changes.
type Auth struct {
	ClientTokens         []string
	ClientIP             restrict.IP
	ClientTokenRestricts []restrict.Token // empty, or one per token

	RelayTokens         []string
	RelayIP             restrict.IP
	RelayTokenRestricts []restrict.Token
}

// Server is a running control server. Its methods are safe for concurrent use.
type Server struct {
	cfg  Config
	log  *slog.Logger
	reg  *registry
	auth atomic.Pointer[Auth]

	limits atomic.Pointer[limitState]

	punches  *punches
	refusals refusals                // since start, by reason
	gate     *gate                   // connections not authenticated yet
	cluster  atomic.Pointer[cluster] // nil unless RunCluster runs

	// beforeRegister is set only by tests (export_test.go): it runs between
	// a session's token check and its registration, the window in which a
	// revocation finds no session to close.
	beforeRegister atomic.Pointer[func()]
}

// New returns a server; call ServeClients (and ServeRelays or AttachRelay).
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log, reg: newRegistry(), punches: newPunches(), gate: newGate()}
	s.auth.Store(&cfg.Auth)
	s.SetLimits(cfg.Limits)
	return s
}

// SetAuth replaces tokens and restrictions. Clients and relays whose token
// is no longer accepted are disconnected at once; restrictions apply to the
// next connection.
func (s *Server) SetAuth(a Auth) {
	s.auth.Store(&a)
	for _, sess := range s.reg.sessions() {
		tokens := a.ClientTokens
		if sess.relay {
			tokens = a.RelayTokens
		}
		if tokenIndex(tokens, sess.token) < 0 {
			s.log.Info("disconnecting a peer whose token was revoked", "peer", sess.id.Short())
			sess.close()
		}
	}
}

func (s *Server) hookBeforeRegister() {
	if f := s.beforeRegister.Load(); f != nil {
		(*f)()
	}
}

// tokenIndex finds token among tokens in constant time per candidate, so the
// time taken does not reveal how much of a token matched.
func tokenIndex(tokens []string, token string) int {
	found := -1
	for i, t := range tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 && found < 0 {
			found = i
		}
	}
	return found
}

func (s *Server) tlsConfig(alpn ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.cfg.Cert},
		// Clients and relays present self-signed certificates: the token
		// authenticates them; the certificate is what peers get pinned to.
		ClientAuth: tls.RequireAnyClientCert,
		NextProtos: alpn,
	}
}

// ServeClients accepts client connections on tr until ctx ends.
func (s *Server) ServeClients(ctx context.Context, tr *quic.Transport) error {
	ln, err := tr.Listen(s.tlsConfig(wire.ALPNClientControl), quicconf.Control())
	if err != nil {
		return fmt.Errorf("listen for clients on %s: %w", tr.Conn.LocalAddr(), err)
	}
	s.log.Info("control listening for clients", "addr", tr.Conn.LocalAddr().String())
	defer s.punches.stopAll()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { serveReflect(gctx, tr); return nil })
	g.Go(func() error {
		return s.acceptLoop(gctx, ln, func() restrict.IP { return s.auth.Load().ClientIP }, s.serveClient)
	})
	return g.Wait()
}

// ServeRelays accepts relay connections on tr until ctx ends.
func (s *Server) ServeRelays(ctx context.Context, tr *quic.Transport) error {
	ln, err := tr.Listen(s.tlsConfig(wire.ALPNRelayControl, wire.ALPNRelayControlV1), quicconf.Control())
	if err != nil {
		return fmt.Errorf("listen for relays on %s: %w", tr.Conn.LocalAddr(), err)
	}
	s.log.Info("control listening for relays", "addr", tr.Conn.LocalAddr().String())
	return s.acceptLoop(ctx, ln, func() restrict.IP { return s.auth.Load().RelayIP }, s.serveRelayConn)
}

// acceptLoop serves every accepted connection in its own goroutine until ctx
// ends or accepting fails; either way it ends the sessions and waits for
// them.
//
// Until serve calls its authenticated function, the connection counts
// against the gate's limits for unauthenticated connections.
func (s *Server) acceptLoop(ctx context.Context, ln *quic.Listener, ipr func() restrict.IP, serve func(ctx context.Context, conn *quic.Conn, authenticated func())) error {
	ctx, cancel := context.WithCancel(ctx)
	var sessions errgroup.Group // a session's end is its own business: none returns an error
	defer sessions.Wait()
	defer cancel()
	defer ln.Close()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		addr := addrOf(conn.RemoteAddr())
		if !ipr().Accepts(addr) {
			if s.gate.shouldLog(addr) {
				s.log.Warn("refused connection by ip-restriction", "remote", conn.RemoteAddr().String())
			}
			s.refusals.add(RefusedAddress)
			_ = conn.CloseWithError(wire.ConnUnauthorized, "address not allowed")
			continue
		}
		if !s.gate.enter(addr) {
			if s.gate.shouldLog(addr) {
				s.log.Warn("refused connection: too many unauthenticated connections", "remote", conn.RemoteAddr().String(),
					"per_address", maxUnauthPerAddr, "total", maxUnauthTotal)
			}
			s.refusals.add(RefusedConnectionLimit)
			_ = conn.CloseWithError(wire.ConnUnauthorized, "too many unauthenticated connections")
			continue
		}
		sessions.Go(func() error {
			var once sync.Once
			release := func() { once.Do(func() { s.gate.leave(addr) }) }
			defer release()
			serve(ctx, conn, release)
			return nil
		})
	}
}

func addrOf(a net.Addr) netip.Addr {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return ap.Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// checkToken finds token (in constant time) and applies its restriction to
// the connection's address. On refusal it answers, closes the connection
// and returns false; the restriction is nil when tokens have none.
func (s *Server) checkToken(conn *quic.Conn, st *quic.Stream, kind string, tokens []string, restricts []restrict.Token, token string, log *slog.Logger) (*restrict.Token, bool) {
	idx := tokenIndex(tokens, token)
	if idx < 0 {
		if s.gate.shouldLog(addrOf(conn.RemoteAddr())) {
			log.Warn(kind+" refused: invalid token (refusals from this address are logged at most every 10 s)", msgid.TokenRefused.Attr())
		}
		s.refusals.add(RefusedInvalidToken)
		refuse(conn, st, wire.CodeUnauthorized, "invalid token")
		return nil, false
	}
	if len(restricts) <= idx {
		return nil, true
	}
	if addr := addrOf(conn.RemoteAddr()); !restricts[idx].IP.Accepts(addr) {
		if s.gate.shouldLog(addr) {
			log.Warn(kind+" refused by token-restriction", msgid.TokenRefused.Attr(), "token_index", idx)
		}
		s.refusals.add(RefusedAddress)
		refuse(conn, st, wire.CodeUnauthorized, "address not allowed for this token")
		return nil, false
	}
	return &restricts[idx], true
}

// refuse writes an Error and closes the connection, after giving the
// message time to arrive: closing at once would discard it in flight.
func refuse(conn *quic.Conn, st *quic.Stream, code, msg string) {
	_ = writeTimed(st, &wire.Error{Code: code, Message: msg})
	_ = st.Close()
	select {
	case <-conn.Context().Done(): // the peer read it and hung up
	case <-time.After(refuseLinger):
	}
	_ = conn.CloseWithError(wire.ConnUnauthorized, msg)
}

const refuseLinger = 2 * time.Second

// Status is the JSON status of a control server.
type Status struct {
	Clients   []ClientStatus   `json:"clients"`
	Endpoints []EndpointStatus `json:"endpoints"`
	Relays    []RelayStatus    `json:"relays"`
	// Cluster is present when control shares its state with other
	// control nodes (store = "etcd").
	Cluster *ClusterStatus `json:"cluster,omitempty"`
	// Refusals counts refused connections and requests since start, by
	// reason (one of the Refused* constants).
	Refusals map[string]int64 `json:"refusals"`
	// ClientTokens is how many client tokens are configured, so that
	// metrics by token index have a series for a token without clients.
	ClientTokens int `json:"client_tokens"`
}

// ClientStatus describes one connected client.
type ClientStatus struct {
	ID        string   `json:"id"`
	Addr      string   `json:"addr"`
	Endpoints []string `json:"endpoints"`
	// TokenIndex is the position of the client's token among the
	// configured client tokens (never the token itself), or -1 for one
	// revoked by a reload and about to be disconnected.
	TokenIndex int `json:"token_index"`
}

// EndpointStatus describes one endpoint name.
type EndpointStatus struct {
	Name         string `json:"name"`
	Sources      int    `json:"sources"`
	Destinations int    `json:"destinations"`
}

// RelayStatus describes one connected relay.
type RelayStatus struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// Status reports the registry.
func (s *Server) Status() Status {
	tokens := s.auth.Load().ClientTokens
	st := s.reg.status(tokens)
	st.Refusals = s.refusals.snapshot()
	st.ClientTokens = len(tokens)
	if c := s.cluster.Load(); c != nil {
		st.Cluster = c.status()
	}
	return st
}

// Summary is the part of Status that a one-line state needs: counts only.
type Summary struct {
	Clients, Endpoints, Relays int
	// Cluster is present when store = "etcd".
	Cluster *ClusterSummary
}

// ClusterSummary is ClusterStatus without the per-node counts.
type ClusterSummary struct {
	Node, State, Error        string
	OtherNodes, RemoteClients int
}

// Summary is Status reduced to counts, without building it. The daemon
// recomputes its one-line state at every registry change; a full Status of
// thousands of clients (a string and a sort each, and a pass over every
// remote client) kept a core busy and the registry locked while clients
// registered: a quarter of a node's CPU in bench -scale.
func (s *Server) Summary() Summary {
	s.reg.mu.Lock()
	sum := Summary{Clients: len(s.reg.clients), Endpoints: len(s.reg.endpoints), Relays: len(s.reg.relays)}
	remote := len(s.reg.remote)
	s.reg.mu.Unlock()
	if c := s.cluster.Load(); c != nil {
		c.mu.Lock()
		others := len(c.nodes)
		if c.nodes[c.cfg.Node] {
			others--
		}
		sum.Cluster = &ClusterSummary{Node: c.cfg.Node, State: c.state, Error: c.err, OtherNodes: others, RemoteClients: remote}
		c.mu.Unlock()
	}
	return sum
}

// Changed is closed at the next change of what Status reports about
// clients, endpoints and relays.
func (s *Server) Changed() <-chan struct{} { return s.reg.changed.C() }
