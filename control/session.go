package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/endpointname"
	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

const (
	maxCandidates = 32
	// sendQueue bounds the one-off messages (errors, punches) waiting for a
	// session's writer. Snapshots do not queue: they are rebuilt when the
	// writer gets to them.
	sendQueue = 256
	// writeTimeout bounds one write: a client whose stream stays full that
	// long is not reading, and its session ends.
	writeTimeout = 30 * time.Second
)

// errNotReading ends a session whose queue overflowed.
var errNotReading = errors.New("client does not read its control stream")

// handshake accepts the first stream and reads its first message from set.
// A message of another kind is answered with bad_request.
func handshake(ctx context.Context, conn *quic.Conn, set wire.Set) (*quic.Stream, wire.Message, error) {
	hctx, cancel := context.WithTimeout(ctx, wire.HelloTimeout)
	defer cancel()
	st, err := conn.AcceptStream(hctx)
	if err != nil {
		return nil, nil, fmt.Errorf("accept hello stream: %w", err)
	}
	_ = st.SetReadDeadline(time.Now().Add(wire.HelloTimeout))
	m, err := wire.Read(st, set)
	if errors.Is(err, wire.ErrUnexpectedKind) {
		refuse(conn, st, wire.CodeBadRequest, "first message must be a hello")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read hello: %w", err)
	}
	_ = st.SetReadDeadline(time.Time{})
	return st, m, nil
}

// writeTimed writes m with a deadline when w has one (a QUIC stream or a
// pipe does), so that a peer that stops reading cannot hold a writer forever.
func writeTimed(w io.Writer, m wire.Message) error {
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	return wire.Write(w, m)
}

func (s *Server) serveClient(ctx context.Context, conn *quic.Conn, authenticated func()) {
	log := s.log.With("remote", conn.RemoteAddr().String())
	defer conn.CloseWithError(wire.ConnNormal, "")
	tlsState := conn.ConnectionState().TLS
	id, ok := identity.PeerIDOf(tlsState)
	if !ok {
		_ = conn.CloseWithError(wire.ConnUnauthorized, "client certificate required")
		return
	}
	st, m, err := handshake(ctx, conn, wire.ClientToControl)
	if err != nil {
		log.Debug("client handshake failed", "err", err)
		return
	}
	hello, ok := m.(*wire.Hello)
	if !ok {
		s.refusals.add(RefusedBadRequest)
		refuse(conn, st, wire.CodeBadRequest, "first message must be hello")
		return
	}
	auth := s.auth.Load()
	tr, ok := s.checkToken(conn, st, "client", auth.ClientTokens, auth.ClientTokenRestricts, hello.Token, log)
	if !ok {
		return
	}
	observed := conn.RemoteAddr().String()
	sctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	sess := newSession(id, tlsState.PeerCertificates[0].Raw, observed)
	sess.addr = addrOf(conn.RemoteAddr())
	sess.token = hello.Token
	sess.direct = candidates(observed, hello.Direct)
	sess.nat = validNAT(hello.NAT)
	sess.punch = hello.Punch
	sess.out = make(chan wire.Message, sendQueue)
	sess.stop = stop
	sess.close = func() { _ = conn.CloseWithError(wire.ConnReplaced, "replaced by a newer connection") }
	log = log.With("client", id.Short())
	s.hookBeforeRegister()
	old, err := s.reg.addClient(sess, s.limits.Load().SessionsPerToken)
	if err != nil {
		if s.gate.shouldLog(sess.addr) {
			log.Warn("client refused: "+err.Error(), "version", hello.Version)
		}
		// Still counted as unauthenticated while refuse lingers, so that
		// a flood of hellos over the limit holds no more than bad tokens.
		s.refusals.add(RefusedConnectionLimit)
		refuse(conn, st, wire.CodeLimitExceeded, err.Error())
		return
	}
	authenticated()
	defer s.reg.removeClient(sess)
	if old != nil {
		old.close()
	}
	// Registered before the welcome, so that the session limit is checked
	// and taken in one step; what others send it meanwhile waits in its
	// queue, since only its writer, started below, writes after the welcome.
	if err := writeTimed(st, &wire.Welcome{Observed: observed, Time: time.Now().UnixMilli(), Node: s.cfg.NodeName}); err != nil {
		return
	}
	log.Info("client connected", "version", hello.Version)
	// A revocation between the token check and the registration above saw
	// no session to close: check the token again now that it is registered.
	if tokenIndex(s.auth.Load().ClientTokens, hello.Token) < 0 {
		log.Info("client disconnected: token revoked while it connected")
		return
	}

	g, gctx := errgroup.WithContext(sctx)
	g.Go(func() error { return s.clientWriter(gctx, sess, st) })
	g.Go(func() error { return s.clientReader(sess, st, tr, log) })
	g.Go(func() error {
		// Whichever half of the session ends first ends the connection,
		// which also unblocks the other half.
		<-gctx.Done()
		switch {
		case ctx.Err() != nil:
			_ = conn.CloseWithError(wire.ConnShutdown, "control server shutting down")
		case errors.Is(context.Cause(sctx), errNotReading):
			_ = conn.CloseWithError(wire.ConnProtocol, "control stream not read")
		default:
			_ = conn.CloseWithError(wire.ConnProtocol, "control session ended")
		}
		return nil
	})
	err = g.Wait()
	if cause := context.Cause(sctx); errors.Is(cause, errNotReading) {
		log.Warn("client disconnected: its control messages overflowed", "queue", sendQueue)
		return
	}
	log.Info("client disconnected", "reason", err)
}

func (s *Server) clientReader(sess *session, st *quic.Stream, tr *restrict.Token, log *slog.Logger) error {
	for {
		m, err := wire.Read(st, wire.ClientToControl)
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *wire.Announce:
			if err := validAnnounce(m); err != nil {
				sess.send(&wire.Error{Code: wire.CodeBadRequest, Message: err.Error(), Endpoint: m.Endpoint, Role: m.Role})
				continue
			}
			if tr != nil && !tr.AcceptsEndpoint(m.Endpoint, m.Role) {
				log.Warn("endpoint refused by token-restriction", msgid.EndpointRefused.Attr(), "endpoint", m.Endpoint, "role", m.Role)
				sess.send(&wire.Error{Code: wire.CodeForbidden, Message: "token may not use this endpoint name or role", Endpoint: m.Endpoint, Role: m.Role})
				continue
			}
			if err := s.reg.announce(sess, m.Endpoint, m.Role, endpointInfo{m.Route, m.Proto}, s.limits.Load().Limits); err != nil {
				s.refuseAnnounce(sess, m, err, log)
				continue
			}
			log.Debug("endpoint announced", "endpoint", m.Endpoint, "role", m.Role, "route", m.Route)
		case *wire.Withdraw:
			s.reg.withdraw(sess, m.Endpoint, m.Role)
		case *wire.Candidates:
			s.reg.setDirect(sess, candidates(sess.observed, m.Direct), m.NAT)
		case *wire.PunchRequest:
			if s.allowPunch(sess, log) {
				s.startPunch(sess, m.Peer, m.Spray)
			}
		case *wire.PunchReady:
			s.punchReady(sess, m.Nonce)
		default:
			return fmt.Errorf("unexpected %s from client", wire.Kind(m))
		}
	}
}

// clientWriter owns the stream's writes after the welcome: queued messages
// in order, and a fresh view whenever the registry pokes the session,
// skipping parts the client already has.
func (s *Server) clientWriter(ctx context.Context, sess *session, st *quic.Stream) error {
	sent := map[string]string{}
	send := func(key string, m wire.Message) error {
		b, _ := json.Marshal(m)
		if sent[key] == string(b) {
			return nil
		}
		if err := writeTimed(st, m); err != nil {
			return err
		}
		sent[key] = string(b)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-sess.out:
			if err := writeTimed(st, m); err != nil {
				return fmt.Errorf("control could not update the client: %w", err)
			}
		case <-sess.notify:
			peers, relays := s.reg.clientView(sess)
			if err := send("relays", &relays); err != nil {
				return fmt.Errorf("control could not update the client: %w", err)
			}
			for i := range peers {
				if err := send("peers/"+peers[i].Role+"/"+peers[i].Endpoint, &peers[i]); err != nil {
					return fmt.Errorf("control could not update the client: %w", err)
				}
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

func validAnnounce(a *wire.Announce) error {
	if err := endpointname.Check(a.Endpoint); err != nil {
		return err
	}
	if a.Role != restrict.RoleSource && a.Role != restrict.RoleDestination {
		return fmt.Errorf("role %q is neither source nor destination", a.Role)
	}
	switch a.Proto {
	case "", wire.ProtoTCP, wire.ProtoUDP:
	default:
		return fmt.Errorf("proto %q is not one of tcp, udp", a.Proto)
	}
	switch a.Route {
	case wire.RouteAny, wire.RouteDirect, wire.RouteRelay:
		return nil
	}
	return fmt.Errorf("route %q is not one of any, direct, relay", a.Route)
}
