package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

func (s *Server) serveRelayConn(ctx context.Context, conn *quic.Conn) {
	log := s.log.With("remote", conn.RemoteAddr().String())
	defer conn.CloseWithError(wire.ConnNormal, "")
	tlsState := conn.ConnectionState().TLS
	if len(tlsState.PeerCertificates) == 0 {
		return
	}
	st, m, err := handshake(ctx, conn)
	if err != nil {
		log.Debug("relay handshake failed", "err", err)
		return
	}
	if m.RelayHello == nil {
		refuse(conn, st, wire.CodeBadRequest, "first message must be relay_hello")
		return
	}
	auth := s.auth.Load()
	if _, ok := checkToken(conn, st, "relay", auth.RelayTokens, auth.RelayTokenRestricts, m.RelayHello.Token, log); !ok {
		return
	}
	if err := wire.Write(st, &wire.Message{Welcome: &wire.Welcome{Observed: conn.RemoteAddr().String()}}); err != nil {
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-sctx.Done()
		if ctx.Err() != nil {
			_ = conn.CloseWithError(wire.ConnShutdown, "control server shutting down")
		}
	}()
	err = s.attachRelay(sctx, st, tlsState.PeerCertificates[0].Raw, m.RelayHello.Addr, m.RelayHello.Token,
		func() { _ = conn.CloseWithError(wire.ConnUnauthorized, "token revoked") })
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
	sess.close = func() {}
	if closeConn != nil {
		sess.close = closeConn
	}
	s.reg.addRelay(sess, addr)
	defer s.reg.removeRelay(sess)
	s.log.Info("relay connected", "relay", id.Short(), "addr", addr)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		var last string
		for {
			select {
			case <-ctx.Done():
				return
			case <-sess.notify:
			}
			auth := s.reg.relayView()
			b, _ := json.Marshal(auth)
			if string(b) == last {
				continue
			}
			if err := wire.Write(rw, &wire.Message{RelayAuth: &auth}); err != nil {
				return
			}
			last = string(b)
		}
	}()
	errc := make(chan error, 1)
	go func() {
		// A relay sends nothing after its hello; reading detects the link ending.
		_, err := wire.Read(rw)
		if err == nil {
			err = fmt.Errorf("unexpected message from relay")
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		cancel()
		return err
	case <-ctx.Done():
		if c, ok := rw.(interface{ CancelRead(quic.StreamErrorCode) }); ok {
			c.CancelRead(wire.StreamAborted)
		}
		if c, ok := rw.(io.Closer); ok {
			_ = c.Close()
		}
		<-errc
		return ctx.Err()
	}
}
