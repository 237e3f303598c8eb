package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

// SourceConfig describes a source: a local TCP listener whose connections
// go to the destination of the same name, or a UDP socket whose flows do.
type SourceConfig struct {
	Addr     string
	Route    string
	Proto    string       // wire.ProtoTCP (or "") or wire.ProtoUDP
	Listener net.Listener // tcp: already bound (socket activation); nil to bind Addr
	// PacketConn is a udp source's socket, already bound (socket
	// activation); nil to bind Addr.
	PacketConn *net.UDPConn
	UDP        UDPConfig
	// LB is a tcp source's load balancing over its destinations.
	LB   LBConfig
	Kind Kind // tls, http, https, ws, wss; see Kind
}

// source is guarded by Client.mu, except traffic.
type source struct {
	name    string
	addr    string
	route   string
	proto   string
	ln      net.Listener // tcp
	pc      *net.UDPConn // udp
	udpCfg  UDPConfig
	cancel  context.CancelFunc
	refused string
	// mismatch says why destinations of our name are not used: they
	// carry the other protocol.
	mismatch string
	traffic  traffic
	udp      udpCounters
	lb       *lbState // tcp
	kind     Kind
}

func (s *source) announce() wire.Message {
	return &wire.Announce{Endpoint: s.name, Role: restrict.RoleSource, Route: s.route, Proto: protoField(s.proto)}
}

// protoField is what an Announce says of proto: tcp is said by omission,
// as clients from before UDP do.
func protoField(proto string) string {
	if proto == wire.ProtoTCP {
		return ""
	}
	return proto
}

// localAddr is where the source listens.
func (s *source) localAddr() net.Addr {
	if s.pc != nil {
		return s.pc.LocalAddr()
	}
	return s.ln.Addr()
}

func (s *source) closeSocket() {
	if s.pc != nil {
		_ = s.pc.Close()
	} else {
		_ = s.ln.Close()
	}
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
	cfg.Proto = wire.ProtoOf(cfg.Proto)
	c.mu.Lock()
	defer c.changed.Notify()
	defer c.mu.Unlock()
	if c.sources[name] != nil {
		return fmt.Errorf("source %q: %w", name, ErrExists)
	}
	if err := cfg.LB.check(); err != nil {
		return fmt.Errorf("source %q: %w", name, err)
	}
	if cfg.Proto == wire.ProtoUDP && cfg.LB != (LBConfig{}) {
		return fmt.Errorf("source %q: load balancing is for tcp sources (a UDP flow keeps its destination)", name)
	}
	if cfg.Kind.Scheme != "" && cfg.Kind.Scheme != "tcp" && cfg.LB != (LBConfig{}) {
		return fmt.Errorf("source %q: load balancing is for tcp sources, not %s", name, cfg.Kind.Scheme)
	}
	if err := checkSourceKind(cfg.Kind, cfg.Proto); err != nil {
		return fmt.Errorf("source %q: %w", name, err)
	}
	s := &source{name: name, addr: cfg.Addr, route: cfg.Route, proto: cfg.Proto, udpCfg: cfg.UDP.withDefaults(),
		lb: newLBState(cfg.LB), kind: cfg.Kind}
	switch cfg.Proto {
	case wire.ProtoUDP:
		s.pc = cfg.PacketConn
		if s.pc == nil {
			ua, err := net.ResolveUDPAddr("udp", cfg.Addr)
			if err != nil {
				return fmt.Errorf("source %q: %w", name, err)
			}
			if s.pc, err = net.ListenUDP("udp", ua); err != nil {
				return fmt.Errorf("source %q: listen udp %s: %w", name, cfg.Addr, err)
			}
			// One socket takes every flow's datagrams: a burst from many
			// clients at once overflows the default buffer (as far as
			// net.core.rmem_max allows; the daemon tunes its sockets).
			_ = s.pc.SetReadBuffer(udpSourceBuffer)
			_ = s.pc.SetWriteBuffer(udpSourceBuffer)
		}
	case wire.ProtoTCP:
		s.ln = cfg.Listener
		if s.ln == nil {
			var err error
			if s.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
				return fmt.Errorf("source %q: listen %s: %w", name, cfg.Addr, err)
			}
		}
	default:
		return fmt.Errorf("source %q: protocol %q is not tcp or udp", name, cfg.Proto)
	}
	c.sources[name] = s
	c.startSourceLocked(s)
	c.ctl.Send(s.announce())
	return nil
}

// RemoveSource closes the source's listener; connections already open go
// on until they end.
func (c *Client) RemoveSource(name string) error {
	c.mu.Lock()
	defer c.changed.Notify()
	defer c.mu.Unlock()
	s := c.sources[name]
	if s == nil {
		return fmt.Errorf("source %q: %w", name, ErrNotFound)
	}
	delete(c.sources, name)
	if s.cancel != nil {
		s.cancel()
	}
	s.closeSocket()
	c.dropEndpointLocked("source", name)
	c.ctl.Send(&wire.Withdraw{Endpoint: name, Role: restrict.RoleSource})
	return nil
}

// startSourceLocked starts accepting; before Run, Run starts it.
func (c *Client) startSourceLocked(s *source) {
	if c.runCtx == nil || s.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(c.runCtx)
	s.cancel = cancel
	c.log.Info("source listening", "endpoint", s.name, "addr", s.localAddr().String(), "proto", s.proto, "route", s.route)
	if s.pc != nil {
		u := &udpSource{c: c, s: s, pc: s.pc, cfg: s.udpCfg, flows: map[netip.AddrPort]*srcFlow{}}
		c.spawnLocked(func(context.Context) { u.serve(ctx) })
		return
	}
	if !s.kind.plain() {
		c.spawnLocked(func(context.Context) { s.serveKind(ctx, c) })
		return
	}
	c.spawnLocked(func(context.Context) { s.accept(ctx, c) })
}

// accept accepts TCP connections until the listener closes, and waits for
// the connections it forwards.
func (s *source) accept(ctx context.Context, c *Client) {
	var flows sync.WaitGroup
	defer flows.Wait()
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
		flows.Go(func() { s.forward(ctx, c, tc.(*net.TCPConn)) })
	}
}

// pick chooses the peer connection a new TCP connection of source name
// goes over: a direct path to any destination beats a relayed one, lower
// RTT wins.
func (c *Client) pick(name string) (*peer, path, *quic.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pickLocked(name)
}

func (c *Client) pickLocked(name string) (*peer, path, *quic.Conn) {
	var best *quic.Conn
	var bestPeer *peer
	bestPath := pathNone
	var bestRTT time.Duration
	for _, p := range c.peers {
		conn, pa, rtt := p.pathFor(name, nil)
		if conn == nil {
			continue
		}
		if best == nil || pa < bestPath || (pa == bestPath && rtt < bestRTT) {
			best, bestPeer, bestPath, bestRTT = conn, p, pa, rtt
		}
	}
	return bestPeer, bestPath, best
}

// forward carries one TCP connection to a destination, waiting briefly
// for a path if none is up yet.
func (s *source) forward(ctx context.Context, c *Client, tc *net.TCPConn) {
	if s.lb.enabled() {
		s.forwardLB(ctx, c, tc)
		return
	}
	t, err := s.openTunnel(ctx, c, tc.RemoteAddr().String(), newFlowID())
	if err != nil {
		c.log.Warn("refusing connection: "+err.Error(), "endpoint", s.name, "from", tc.RemoteAddr().String())
		_ = tc.Close()
		return
	}
	t.p.carry(tc, t.st, t.conn, t.pa, s.name, t.flow, true, &s.traffic, &t.p.traffic)
}
