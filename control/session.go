package control

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
	"unicode"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

const (
	helloTimeout  = 10 * time.Second
	maxCandidates = 32
)

// lockedWriter serializes messages from the reader (refusals) and the
// writer (snapshots) onto one stream.
type lockedWriter struct {
	mu sync.Mutex
	st *quic.Stream
}

func (w *lockedWriter) write(m *wire.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return wire.Write(w.st, m)
}

// handshake accepts the first stream and reads its first message.
func handshake(ctx context.Context, conn *quic.Conn) (*quic.Stream, *wire.Message, error) {
	hctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	st, err := conn.AcceptStream(hctx)
	if err != nil {
		return nil, nil, fmt.Errorf("accept hello stream: %w", err)
	}
	_ = st.SetReadDeadline(time.Now().Add(helloTimeout))
	m, err := wire.Read(st)
	if err != nil {
		return st, nil, fmt.Errorf("read hello: %w", err)
	}
	_ = st.SetReadDeadline(time.Time{})
	return st, m, nil
}

func (s *Server) serveClient(ctx context.Context, conn *quic.Conn) {
	log := s.log.With("remote", conn.RemoteAddr().String())
	defer conn.CloseWithError(wire.ConnNormal, "")
	tlsState := conn.ConnectionState().TLS
	id, ok := identity.PeerIDOf(tlsState)
	if !ok {
		_ = conn.CloseWithError(wire.ConnUnauthorized, "client certificate required")
		return
	}
	st, m, err := handshake(ctx, conn)
	if err != nil {
		log.Debug("client handshake failed", "err", err)
		return
	}
	if m.Hello == nil {
		refuse(conn, st, wire.CodeBadRequest, "first message must be hello")
		return
	}
	auth := s.auth.Load()
	tr, ok := checkToken(conn, st, "client", auth.ClientTokens, auth.ClientTokenRestricts, m.Hello.Token, log)
	if !ok {
		return
	}
	observed := conn.RemoteAddr().String()
	sess := newSession(id, tlsState.PeerCertificates[0].Raw, observed)
	sess.token = m.Hello.Token
	sess.direct = candidates(observed, m.Hello.Direct)
	sess.nat = validNAT(m.Hello.NAT)
	sess.punch = m.Hello.Punch
	w := &lockedWriter{st: st}
	sess.w = w
	if err := w.write(&wire.Message{Welcome: &wire.Welcome{Observed: observed}}); err != nil {
		return
	}
	log = log.With("client", id.Short())
	log.Info("client connected", "version", m.Hello.Version)
	sess.close = func() { _ = conn.CloseWithError(wire.ConnReplaced, "replaced by a newer connection") }
	if old := s.reg.addClient(sess); old != nil {
		old.close()
	}
	defer s.reg.removeClient(sess)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		s.clientWriter(sctx, sess, w)
	}()
	go func() {
		// Whichever half of the session ends first ends the connection,
		// so a writer that failed does not leave a client uninformed.
		<-sctx.Done()
		if ctx.Err() != nil {
			_ = conn.CloseWithError(wire.ConnShutdown, "control server shutting down")
		} else {
			_ = conn.CloseWithError(wire.ConnProtocol, "control session ended")
		}
	}()
	err = s.clientReader(sess, st, w, tr, log)
	cancel()
	log.Info("client disconnected", "reason", err)
}

func (s *Server) clientReader(sess *session, st *quic.Stream, w *lockedWriter, tr *restrict.Token, log *slog.Logger) error {
	for {
		m, err := wire.Read(st)
		if err != nil {
			return err
		}
		switch {
		case m.Announce != nil:
			a := m.Announce
			if err := validEndpoint(a.Endpoint, a.Role, a.Route); err != nil {
				_ = w.write(&wire.Message{Error: &wire.Error{Code: wire.CodeBadRequest, Message: err.Error(), Endpoint: a.Endpoint, Role: a.Role}})
				continue
			}
			if tr != nil && !tr.AcceptsEndpoint(a.Endpoint, a.Role) {
				log.Warn("endpoint refused by token-restriction", "endpoint", a.Endpoint, "role", a.Role)
				_ = w.write(&wire.Message{Error: &wire.Error{Code: wire.CodeForbidden, Message: "token may not use this endpoint name or role", Endpoint: a.Endpoint, Role: a.Role}})
				continue
			}
			log.Debug("endpoint announced", "endpoint", a.Endpoint, "role", a.Role, "route", a.Route)
			s.reg.announce(sess, a.Endpoint, a.Role, a.Route)
		case m.Withdraw != nil:
			s.reg.withdraw(sess, m.Withdraw.Endpoint, m.Withdraw.Role)
		case m.Candidates != nil:
			s.reg.setDirect(sess, candidates(sess.observed, m.Candidates.Direct), m.Candidates.NAT)
		case m.PunchRequest != nil:
			s.startPunch(sess, m.PunchRequest.Peer, m.PunchRequest.Spray)
		case m.PunchReady != nil:
			s.punchReady(sess, m.PunchReady.Nonce)
		default:
			return fmt.Errorf("unexpected message from client")
		}
	}
}

// clientWriter sends a fresh view whenever the registry pokes the session,
// skipping parts the client already has.
func (s *Server) clientWriter(ctx context.Context, sess *session, w *lockedWriter) {
	sent := map[string]string{}
	send := func(key string, m *wire.Message) error {
		b, _ := json.Marshal(m)
		if sent[key] == string(b) {
			return nil
		}
		if err := w.write(m); err != nil {
			s.log.Warn("control could not update a client", "client", sess.id.Short(), "err", err)
			return err
		}
		sent[key] = string(b)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-sess.notify:
		}
		peers, relays := s.reg.clientView(sess)
		if err := send("relays", &wire.Message{Relays: &relays}); err != nil {
			return
		}
		for i := range peers {
			if err := send("peers/"+peers[i].Role+"/"+peers[i].Endpoint, &wire.Message{Peers: &peers[i]}); err != nil {
				return
			}
		}
	}
}

// candidates is the observed address followed by the valid, distinct
// addresses the client reported.
func candidates(observed string, reported []string) []string {
	out := []string{observed}
	seen := map[string]bool{observed: true}
	for _, c := range reported {
		if len(out) > maxCandidates {
			break
		}
		ap, err := netip.ParseAddrPort(c)
		if err != nil || ap.Port() == 0 || seen[ap.String()] {
			continue
		}
		seen[ap.String()] = true
		out = append(out, ap.String())
	}
	return out
}

func validEndpoint(name, role, route string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("endpoint name must have 1 to 255 bytes")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("endpoint name has a control character")
		}
	}
	if role != restrict.RoleSource && role != restrict.RoleDestination {
		return fmt.Errorf("role %q is neither source nor destination", role)
	}
	switch route {
	case wire.RouteAny, wire.RouteDirect, wire.RouteRelay:
		return nil
	}
	return fmt.Errorf("route %q is not one of any, direct, relay", route)
}
