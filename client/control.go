package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/internal/ctladdr"
	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// run keeps a session with a control server until ctx ends. It dials the
// control address that worked last; when a session ends or a dial fails it
// goes on at once to the next address, and backs off only when a whole
// round of them failed. Peer connections do not depend on it: they keep
// carrying traffic while control is away.
func (l *controlLink) run(ctx context.Context) {
	c := l.c
	rot := ctladdr.New(ctladdr.Split(c.cfg.ServerAddr), c.cfg.Resolver)
	bo := backoff.New(100*time.Millisecond, time.Second)
	refusedBo := backoff.New(time.Second, 30*time.Second)
	for ctx.Err() == nil {
		started := time.Now()
		target, err := rot.Next(ctx)
		if err == nil {
			err = l.session(ctx, target, rot)
		}
		if ctx.Err() != nil {
			return
		}
		roundDone := rot.Failed()
		next := "" // said when failing over, not when retrying the only one
		if !roundDone {
			next = "the next address"
			if t, ok := rot.Peek(); ok {
				next = t.Entry + " (" + t.Addr.String() + ")"
			}
		}
		var werr *wire.Error
		if errors.As(err, &werr) {
			msg := "control server refused this client"
			if werr.Code == wire.CodeUnauthorized {
				msg += "; check the token"
			}
			c.log.Error(msg, msgid.ClientRefused.Attr(), "server", target.Entry, "code", werr.Code, "reason", werr.Message)
			if roundDone && !refusedBo.Sleep(ctx) {
				return
			}
			continue
		}
		refusedBo.Reset()
		if time.Since(started) > 10*time.Second {
			bo.Reset()
		}
		if !roundDone {
			c.log.Warn("control server failed, failing over", msgid.ControlLost.Attr(), "server", target.Entry, "addr", addrText(target), "next", next, "err", err)
			continue
		}
		c.log.Warn("control server unreachable, retrying", msgid.ControlLost.Attr(), "server", c.cfg.ServerAddr, "err", err)
		if !bo.Sleep(ctx) {
			return
		}
	}
}

func addrText(t ctladdr.Target) string {
	if !t.Addr.IsValid() {
		return ""
	}
	return t.Addr.String()
}

func (l *controlLink) dial(ctx context.Context, target ctladdr.Target, several bool) (*quic.Conn, error) {
	c := l.c
	tlsConf := c.cfg.ServerTLS.Clone()
	tlsConf.MinVersion = tls.VersionTLS13
	tlsConf.Certificates = []tls.Certificate{c.id.Cert}
	tlsConf.NextProtos = []string{wire.ALPNClientControl}
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = target.Host()
	}
	qconf := quicconf.Control()
	timeout := 10 * time.Second
	if several {
		// Another node may be up: a dead one must not hold the link for
		// long, at the dial as during the session.
		qconf, timeout = quicconf.ControlFailover(), 3*time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := c.direct.Dial(dctx, target.UDPAddr(), tlsConf, qconf)
	if err != nil {
		return nil, fmt.Errorf("dial control %s (%s): %w", target.Entry, target.Addr, err)
	}
	return conn, nil
}

// hello opens the session's stream and exchanges hello and welcome.
func (l *controlLink) hello(ctx context.Context, conn *quic.Conn) (*quic.Stream, *wire.Welcome, error) {
	c := l.c
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("open control stream: %w", err)
	}
	hello := &wire.Hello{Token: c.cfg.Token, Version: c.cfg.Version, Direct: c.trav.Candidates(), NAT: c.trav.NAT(), Punch: true}
	sent := time.Now()
	welcome, err := wire.Handshake(ctx, st, hello, wire.ControlToClient)
	if err != nil {
		return nil, nil, err
	}
	if skew, ok := clockSkew(welcome.Time, sent, time.Now()); ok {
		l.setSkew(skew)
	}
	return st, welcome, nil
}

func (l *controlLink) session(ctx context.Context, target ctladdr.Target, rot *ctladdr.Rotation) error {
	c := l.c
	conn, err := l.dial(ctx, target, rot.Several())
	if err != nil {
		return err
	}
	defer conn.CloseWithError(wire.ConnNormal, "")
	stop := context.AfterFunc(ctx, func() { _ = conn.CloseWithError(wire.ConnNormal, "client stopping") })
	defer stop()
	st, welcome, err := l.hello(ctx, conn)
	if err != nil {
		return fmt.Errorf("control %s (%s): %w", target.Entry, target.Addr, err)
	}
	rot.Succeeded()
	c.log.Info("connected to control", msgid.ControlConnected.Attr(), "server", target.Entry, "addr", target.Addr.String(), "node", welcome.Node, "observed", welcome.Observed)

	sess := newControlSession(conn, st)
	// Announce under the lock, so that an endpoint added concurrently is
	// announced exactly once: either here or by AddSource/AddDestination.
	// This session's answers decide what is refused: a limit of control
	// may have room now.
	c.mu.Lock()
	l.publish(sess, welcome.Observed, target.Addr.String(), welcome.Node)
	for _, s := range c.sources {
		s.refused = ""
		sess.enqueue(s.announce())
	}
	for _, d := range c.destinations {
		d.refused = ""
		sess.enqueue(d.announce())
	}
	c.mu.Unlock()
	defer c.changed.Notify() // after withdraw: deferred calls run last-first
	defer l.withdraw(sess)
	c.registeredOnce.Do(func() { close(c.registered) })
	// A new session may see a new public address: measure the NAT again
	// and report candidates.
	c.trav.SetObserved(welcome.Observed)
	c.changed.Notify()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return sess.writeLoop(gctx) })
	g.Go(func() error { return l.read(gctx, st) })
	g.Go(func() error { l.retryRefused(gctx, sess); return nil })
	g.Go(func() error {
		<-gctx.Done() // the reader blocks in Read: closing the connection ends it
		_ = conn.CloseWithError(wire.ConnNormal, "")
		return nil
	})
	err = g.Wait()
	return fmt.Errorf("control session: %w", err)
}

// retryRefused announces refused endpoints again every refusedRetry until
// ctx ends. An accepted one is known by the peers message that follows
// (updatePeers clears its refusal); a refused one is refused again.
func (l *controlLink) retryRefused(ctx context.Context, sess *controlSession) {
	c := l.c
	tick := time.NewTicker(refusedRetry)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.mu.Lock()
		for _, s := range c.sources {
			if s.refused != "" {
				sess.enqueue(s.announce())
			}
		}
		for _, d := range c.destinations {
			if d.refused != "" {
				sess.enqueue(d.announce())
			}
		}
		c.mu.Unlock()
	}
}

// read handles control's messages until the stream fails.
func (l *controlLink) read(ctx context.Context, st *quic.Stream) error {
	c := l.c
	for {
		m, err := wire.Read(st, wire.ControlToClient)
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *wire.Peers:
			c.updatePeers(m)
		case *wire.Relays:
			c.relays.update(m)
		case *wire.Punch:
			c.trav.OnPunch(m)
		case *wire.PunchGo:
			c.trav.OnPunchGo(m)
		case *wire.Error:
			c.refused(m)
		default:
			return fmt.Errorf("unexpected %s from control", wire.Kind(m))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// refused handles an error control sends during the session: a refused
// announce names its endpoint; one that names none refuses a punch request,
// whose attempt then fails on its own timeout (the relay carries on).
func (c *Client) refused(e *wire.Error) {
	if e.Endpoint == "" {
		c.log.Warn("control refused a request", "code", e.Code, "reason", e.Message)
		return
	}
	c.mu.Lock()
	var was string
	if s := c.sources[e.Endpoint]; s != nil && e.Role == "source" {
		was, s.refused = s.refused, e.Message
	}
	if d := c.destinations[e.Endpoint]; d != nil && e.Role == "destination" {
		was, d.refused = d.refused, e.Message
	}
	c.mu.Unlock()
	// A retry refused for the same reason is no news.
	level := slog.LevelError
	if was == e.Message {
		level = slog.LevelDebug
	}
	c.log.Log(context.Background(), level, "control refused endpoint", msgid.EndpointRefused.Attr(), "endpoint", e.Endpoint, "role", e.Role, "code", e.Code, "reason", e.Message)
	c.changed.Notify()
}
