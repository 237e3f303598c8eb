package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// controlStream is the live session's stream; writes from endpoint changes
// and from the session itself are serialized here.
type controlStream struct {
	mu   sync.Mutex
	st   *quic.Stream
	conn *quic.Conn // closed to start a new session after a network change
}

func (s *controlStream) write(m wire.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return wire.Write(s.st, m)
}

// runControl keeps a session with the control server until ctx ends,
// reconnecting with backoff. Peer connections do not depend on it: they keep
// carrying traffic while control is away.
func (c *Client) runControl(ctx context.Context) {
	bo := backoff.New(100*time.Millisecond, time.Second)
	refusedBo := backoff.New(time.Second, 30*time.Second)
	for ctx.Err() == nil {
		started := time.Now()
		err := c.controlSession(ctx)
		if ctx.Err() != nil {
			return
		}
		var werr *wire.Error
		if errors.As(err, &werr) {
			c.log.Error("control server refused this client; check the token", "server", c.cfg.ServerAddr, "err", err)
			if !refusedBo.Sleep(ctx) {
				return
			}
			continue
		}
		refusedBo.Reset()
		if time.Since(started) > 10*time.Second {
			bo.Reset()
		}
		c.log.Warn("control server unreachable, retrying", "server", c.cfg.ServerAddr, "err", err)
		if !bo.Sleep(ctx) {
			return
		}
	}
}

func (c *Client) dialControl(ctx context.Context) (*quic.Conn, error) {
	addr, err := net.ResolveUDPAddr("udp", c.cfg.ServerAddr)
	if err != nil {
		return nil, fmt.Errorf("resolve control %s: %w", c.cfg.ServerAddr, err)
	}
	tlsConf := c.cfg.ServerTLS.Clone()
	tlsConf.MinVersion = tls.VersionTLS13
	tlsConf.Certificates = []tls.Certificate{c.id.Cert}
	tlsConf.NextProtos = []string{wire.ALPNClientControl}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := c.direct.Dial(dctx, addr, tlsConf, quicconf.Control())
	if err != nil {
		return nil, fmt.Errorf("dial control %s: %w", c.cfg.ServerAddr, err)
	}
	return conn, nil
}

func (c *Client) controlSession(ctx context.Context) error {
	conn, err := c.dialControl(ctx)
	if err != nil {
		return err
	}
	defer conn.CloseWithError(wire.ConnNormal, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("open control stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.CloseWithError(wire.ConnNormal, "client stopping") })
	defer stop()
	cs := &controlStream{st: st, conn: conn}
	welcome, err := wire.Handshake(ctx, st, &wire.Hello{Token: c.cfg.Token, Version: c.cfg.Version, Direct: c.localCandidates(), NAT: c.natType(), Punch: true}, wire.ControlToClient)
	if err != nil {
		return err
	}
	c.log.Info("connected to control", "server", c.cfg.ServerAddr, "observed", welcome.Observed)

	// Announce under the lock so that an endpoint added concurrently is
	// announced exactly once: either here or by AddSource/AddDestination.
	c.mu.Lock()
	c.observed = welcome.Observed
	c.ctl = cs
	var announceErr error
	for _, s := range c.sources {
		if err := cs.write(s.announce()); err != nil {
			announceErr = err
		}
	}
	for _, d := range c.destinations {
		if err := cs.write(d.announce()); err != nil {
			announceErr = err
		}
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.ctl == cs {
			c.ctl = nil
		}
		c.mu.Unlock()
	}()
	if announceErr != nil {
		return announceErr
	}
	c.registeredOnce.Do(func() { close(c.registered) })
	// A new session may see a new public address: measure the NAT again
	// and report candidates.
	c.trav.mu.Lock()
	c.trav.reported = ""
	c.trav.mu.Unlock()
	poke(c.trav.changed)
	for {
		m, err := wire.Read(st, wire.ControlToClient)
		if err != nil {
			return fmt.Errorf("control session: %w", err)
		}
		switch m := m.(type) {
		case *wire.Peers:
			c.updatePeers(m)
		case *wire.Relays:
			c.updateRelays(ctx, m)
			poke(c.trav.changed)
		case *wire.Punch:
			c.onPunch(ctx, m)
		case *wire.PunchGo:
			c.onPunchGo(m)
		case *wire.Error:
			c.endpointRefused(m)
		default:
			return fmt.Errorf("unexpected %s from control", wire.Kind(m))
		}
	}
}

// sendLocked sends m on the live session, if any; a failure ends that
// session, which re-announces everything on reconnect.
func (c *Client) sendLocked(m wire.Message) {
	if c.ctl == nil {
		return
	}
	if err := c.ctl.write(m); err != nil {
		c.log.Debug("control write failed", "err", err)
	}
}

func (c *Client) endpointRefused(e *wire.Error) {
	c.log.Error("control refused endpoint", "endpoint", e.Endpoint, "role", e.Role, "code", e.Code, "reason", e.Message)
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.sources[e.Endpoint]; s != nil && e.Role == "source" {
		s.refused = e.Message
	}
	if d := c.destinations[e.Endpoint]; d != nil && e.Role == "destination" {
		d.refused = e.Message
	}
}
