package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

func (s *Server) serveRelayConn(ctx context.Context, conn *quic.Conn, authenticated func()) {
	log := s.log.With("remote", conn.RemoteAddr().String())
	defer conn.CloseWithError(wire.ConnNormal, "")
	tlsState := conn.ConnectionState().TLS
	if len(tlsState.PeerCertificates) == 0 {
		return
	}
	st, m, err := handshake(ctx, conn, wire.RelayToControl)
	if err != nil {
		log.Debug("relay handshake failed", "err", err)
		return
	}
	hello := m.(*wire.RelayHello) // the only kind of RelayToControl
	if tlsState.NegotiatedProtocol == wire.ALPNRelayControlV1 {
		// Its hello is the same, its tables are not: say so, rather than
		// let it fail on a TLS alert or on a message it cannot read.
		if s.gate.shouldLog(addrOf(conn.RemoteAddr())) {
			log.Warn("relay refused: it speaks an older relay protocol (refusals from this address are logged at most every 10 s)",
				"alpn", tlsState.NegotiatedProtocol)
		}
		s.refusals.add(RefusedBadRequest)
		refuse(conn, st, wire.CodeBadRequest, "relay protocol "+wire.ALPNRelayControlV1+" is no longer supported: upgrade the relay to speak "+wire.ALPNRelayControl)
		return
	}
	auth := s.auth.Load()
	if _, ok := s.checkToken(conn, st, "relay", auth.RelayTokens, auth.RelayTokenRestricts, hello.Token, log); !ok {
		return
	}
	authenticated()
	if err := writeTimed(st, &wire.Welcome{Observed: conn.RemoteAddr().String(), Node: s.cfg.NodeName}); err != nil {
		return
	}
	err = s.attachRelay(ctx, st, tlsState.PeerCertificates[0].Raw, hello.Addr, hello.Token,
		func() { _ = conn.CloseWithError(wire.ConnUnauthorized, "token revoked") })
	if ctx.Err() != nil {
		_ = conn.CloseWithError(wire.ConnShutdown, "control server shutting down")
	}
	log.Info("relay disconnected", "reason", err)
}

// AttachRelay runs the control side of a relay link over rw (after the
// hello) until the link fails or ctx ends. The server role calls it
// directly with an in-process pipe.
func (s *Server) AttachRelay(ctx context.Context, rw io.ReadWriter, cert []byte, addr string) error {
	return s.attachRelay(ctx, rw, cert, addr, "", nil)
}

// attachRelay runs a relay link; token is what the relay authenticated
// with ("" for the in-process relay, which no revocation touches).
func (s *Server) attachRelay(ctx context.Context, rw io.ReadWriter, cert []byte, addr, token string, closeConn func()) error {
	id := identity.IDOf(cert)
	sess := newSession(id, cert, addr)
	sess.relay, sess.token = true, token
	// Closing a link ends it here too: for the in-process relay there is no
	// connection to close, and a link replaced by a newer one of the same
	// relay must not linger beside it.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess.close = func() {
		cancel()
		if closeConn != nil {
			closeConn()
		}
	}
	s.hookBeforeRegister()
	if old := s.reg.addRelay(sess, addr); old != nil {
		s.log.Info("relay reconnected: closing its previous link", "relay", id.Short())
		old.close()
	}
	defer s.reg.removeRelay(sess)
	if token != "" && tokenIndex(s.auth.Load().RelayTokens, token) < 0 {
		return errors.New("token revoked while the link was being set up")
	}
	s.log.Info("relay connected", "relay", id.Short(), "addr", addr)

	g, gctx := errgroup.WithContext(lctx)
	g.Go(func() error { return s.relayWriter(gctx, sess, rw) })
	g.Go(func() error {
		// A relay sends nothing after its hello; reading detects the link ending.
		m, err := wire.Read(rw, wire.RelayToControl)
		if err == nil {
			err = fmt.Errorf("unexpected %s from relay", wire.Kind(m))
		}
		return err
	})
	g.Go(func() error {
		// Ending the link unblocks both the reader and a stuck writer.
		<-gctx.Done()
		if st, ok := rw.(*quic.Stream); ok {
			st.CancelRead(wire.StreamAborted)
			st.CancelWrite(wire.StreamAborted)
		} else if c, ok := rw.(io.Closer); ok {
			_ = c.Close()
		}
		return nil
	})
	err := g.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil && lctx.Err() != nil {
		err = errors.New("link closed: replaced or its token revoked")
	}
	return err
}

// relayWriter owns the link's writes: whenever the registry pokes the
// relay, what changed in its table since the last batch on this link (all
// of it, as a reset, the first time).
func (s *Server) relayWriter(ctx context.Context, sess *session, w io.Writer) error {
	var sent relayTable
	var rest time.Duration
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sess.notify:
		}
		// Building the view and its delta takes time in proportion to the
		// table, with the registry locked for the view. Resting as long
		// after each keeps a burst of changes to a big table (clients
		// announcing thousands of names) from keeping this writer busy
		// and the registry locked most of the time; the changes that come
		// meanwhile go in the next batch.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(rest):
		}
		start := time.Now()
		var batch []*wire.RelayAuthDelta
		batch, sent = relayDelta(sent, s.reg.relayView().Endpoints, maxDeltaBody)
		rest = time.Since(start)
		for _, m := range batch {
			if err := writeTimed(w, m); err != nil {
				return fmt.Errorf("send relay_auth_delta: %w", err)
			}
		}
	}
}
