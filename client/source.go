package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

// connectWait is how long a new TCP connection waits for a usable path
// (e.g. right after start-up) before it is refused.
const connectWait = 5 * time.Second

// SourceConfig describes a source: a local TCP listener whose connections
// go to the destination of the same name.
type SourceConfig struct {
	Addr     string
	Route    string
	Listener net.Listener // already bound (socket activation); nil to bind Addr
}

type source struct {
	name    string
	addr    string
	route   string
	ln      net.Listener
	cancel  context.CancelFunc
	refused string
	traffic traffic
}

func (s *source) announce() wire.Message {
	return &wire.Announce{Endpoint: s.name, Role: restrict.RoleSource, Route: s.route}
}

// ErrExists is returned when adding an endpoint whose name is taken.
var ErrExists = errors.New("endpoint already exists")

// ErrNotFound is returned when removing an endpoint that does not exist.
var ErrNotFound = errors.New("no such endpoint")

// AddSource binds the source's listener and starts forwarding.
func (c *Client) AddSource(name string, cfg SourceConfig) error {
	if cfg.Route == "" {
		cfg.Route = wire.RouteAny
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sources[name] != nil {
		return fmt.Errorf("source %q: %w", name, ErrExists)
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return fmt.Errorf("source %q: listen %s: %w", name, cfg.Addr, err)
		}
	}
	s := &source{name: name, addr: cfg.Addr, route: cfg.Route, ln: ln}
	c.sources[name] = s
	if c.runCtx != nil {
		c.startSourceLocked(s)
	}
	c.sendLocked(s.announce())
	return nil
}

// RemoveSource closes the source's listener and its connections.
func (c *Client) RemoveSource(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sources[name]
	if s == nil {
		return fmt.Errorf("source %q: %w", name, ErrNotFound)
	}
	delete(c.sources, name)
	if s.cancel != nil {
		s.cancel()
	}
	_ = s.ln.Close()
	c.sendLocked(&wire.Withdraw{Endpoint: name, Role: restrict.RoleSource})
	return nil
}

func (c *Client) startSourceLocked(s *source) {
	ctx, cancel := context.WithCancel(c.runCtx)
	s.cancel = cancel
	c.log.Info("source listening", "endpoint", s.name, "addr", s.ln.Addr().String(), "route", s.route)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.acceptSource(ctx, s)
	}()
}

func (c *Client) acceptSource(ctx context.Context, s *source) {
	stop := context.AfterFunc(ctx, func() { _ = s.ln.Close() })
	defer stop()
	for {
		tc, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				c.log.Error("source accept failed", "endpoint", s.name, "err", err)
			}
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.forward(ctx, s, tc.(*net.TCPConn))
		}()
	}
}

// pickLocked chooses the connection a new TCP connection of s goes over:
// a direct path to any destination beats a relayed one, lower RTT wins.
func (c *Client) pickLocked(s *source) (*quic.Conn, *peer, path) {
	var best *quic.Conn
	var bestPeer *peer
	bestPath := pathNone
	var bestRTT time.Duration
	for _, p := range c.peers {
		theirs, ok := p.asDestination[s.name]
		if !ok {
			continue
		}
		for _, cand := range []struct {
			conn *quic.Conn
			pa   path
		}{{p.directConn, pathDirect}, {p.relayConn, pathRelay}} {
			if cand.conn == nil || !allows(s.route, cand.pa) || !allows(theirs, cand.pa) || (cand.pa == pathDirect && p.migrating) {
				continue
			}
			rtt := cand.conn.ConnectionStats().SmoothedRTT
			if best == nil || cand.pa < bestPath || (cand.pa == bestPath && rtt < bestRTT) {
				best, bestPeer, bestPath, bestRTT = cand.conn, p, cand.pa, rtt
			}
			break // the first usable path of a peer is its best
		}
	}
	return best, bestPeer, bestPath
}

func (c *Client) forward(ctx context.Context, s *source, tc *net.TCPConn) {
	log := c.log.With("endpoint", s.name, "from", tc.RemoteAddr().String())
	deadline := time.NewTimer(connectWait)
	defer deadline.Stop()
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		conn, p, pa := c.pickLocked(s)
		changed := c.changed
		c.mu.Unlock()
		if conn != nil {
			st, err := conn.OpenStream()
			if err == nil {
				log.Debug("connection routed", "peer", p.id.Short(), "route", pa.String())
				if err := wire.Write(st, &wire.Connect{Endpoint: s.name, From: tc.RemoteAddr().String()}); err != nil {
					st.CancelWrite(wire.StreamAborted)
					st.CancelRead(wire.StreamAborted)
					_ = tc.Close()
					return
				}
				proxy(tc, st, &s.traffic, &p.traffic)
				return
			}
			var nerr net.Error
			if errors.As(err, &nerr) && nerr.Timeout() || conn.Context().Err() == nil {
				log.Warn("refusing connection: peer stream limit reached", "peer", p.id.Short(), "err", err)
				_ = tc.Close()
				return
			}
			// The connection died under us: wait for the path to be redone.
		}
		select {
		case <-changed:
			continue
		case <-deadline.C:
		case <-ctx.Done():
		}
		log.Warn("refusing connection: no usable path to a destination", "waited", connectWait.String())
		_ = tc.Close()
		return
	}
}
