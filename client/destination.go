package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/proxyproto"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

// DestinationConfig describes a destination: a local service that sources
// of the same name reach.
type DestinationConfig struct {
	Addr           string
	Route          string
	ProxyProto     string // "", "v1" or "v2"
	FileServerRoot string // when set, serve this directory over HTTP at Addr
	Proto          string // wire.ProtoTCP (or "") or wire.ProtoUDP
	UDP            UDPConfig
	Kind           Kind // tls, http, https, file; see Kind
	// StartUnit is started through Units when the service refuses a
	// dial, and stopped after StopIdle (when > 0) without streams.
	StartUnit string
	StopIdle  time.Duration
	Units     Units
}

// destination is guarded by Client.mu, except traffic.
type destination struct {
	name       string
	addr       string
	route      string
	proxyProto string
	fileLn     net.Listener // the file server's, until it is served
	fileServer *http.Server
	refused    string
	proto      string
	udpCfg     UDPConfig
	// mismatch says why sources of our name are not served: they carry
	// the other protocol.
	mismatch string
	traffic  traffic
	udp      udpCounters
	od       *onDemand // start-unit, or nil
	destKind
}

func (d *destination) announce() wire.Message {
	return &wire.Announce{Endpoint: d.name, Role: restrict.RoleDestination, Route: d.route, Proto: protoField(d.proto)}
}

// stop closes the destination's file server, if any.
func (d *destination) stop() {
	d.stopKind()
	if d.od != nil {
		d.od.close()
	}
	if d.fileServer != nil {
		_ = d.fileServer.Close()
	}
	if d.fileLn != nil {
		_ = d.fileLn.Close()
	}
}

// AddDestination starts offering a destination.
func (c *Client) AddDestination(name string, cfg DestinationConfig) error {
	if cfg.Route == "" {
		cfg.Route = wire.RouteAny
	}
	c.mu.Lock()
	defer c.changed.Notify()
	defer c.mu.Unlock()
	if c.destinations[name] != nil {
		return fmt.Errorf("destination %q: %w", name, ErrExists)
	}
	d := &destination{name: name, addr: cfg.Addr, route: cfg.Route, proxyProto: cfg.ProxyProto,
		proto: wire.ProtoOf(cfg.Proto), udpCfg: cfg.UDP.withDefaults()}
	if d.proto != wire.ProtoTCP && d.proto != wire.ProtoUDP {
		return fmt.Errorf("destination %q: protocol %q is not tcp or udp", name, d.proto)
	}
	if d.proto == wire.ProtoUDP && (cfg.ProxyProto != "" || cfg.FileServerRoot != "") {
		return fmt.Errorf("destination %q: PROXY protocol and the file server are for tcp only", name)
	}
	if err := d.initOnDemand(cfg, c.log); err != nil {
		return fmt.Errorf("destination %q: %w", name, err)
	}
	if err := d.initKind(cfg.Kind, c.log); err != nil {
		return fmt.Errorf("destination %q: %w", name, err)
	}
	if cfg.FileServerRoot != "" {
		ln, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			return fmt.Errorf("destination %q: file server listen %s: %w", name, cfg.Addr, err)
		}
		d.addr, d.fileLn = ln.Addr().String(), ln
		d.fileServer = &http.Server{Handler: http.FileServer(http.Dir(cfg.FileServerRoot)), ReadHeaderTimeout: 10 * time.Second}
	}
	c.destinations[name] = d
	c.startDestinationLocked(d)
	c.ctl.Send(d.announce())
	return nil
}

// startDestinationLocked serves the file server, once Run runs.
func (c *Client) startDestinationLocked(d *destination) {
	if c.runCtx == nil {
		return
	}
	c.log.Info("destination offered", "endpoint", d.name, "addr", d.addr, "route", d.route)
	if ln := d.fileLn; ln != nil {
		d.fileLn = nil
		c.spawnLocked(func(context.Context) { _ = d.fileServer.Serve(ln) })
	}
}

// RemoveDestination stops offering a destination; flows already open end.
func (c *Client) RemoveDestination(name string) error {
	defer c.changed.Notify()
	c.mu.Lock()
	d := c.destinations[name]
	if d == nil {
		c.mu.Unlock()
		return fmt.Errorf("destination %q: %w", name, ErrNotFound)
	}
	delete(c.destinations, name)
	d.stop()
	c.dropEndpointLocked("destination", name)
	c.ctl.Send(&wire.Withdraw{Endpoint: name, Role: restrict.RoleDestination})
	c.mu.Unlock()
	c.udpFlows.closeEndpoint(name) // a UDP flow has no end of its own to wait for
	return nil
}

// acceptPeers accepts connections from sources on one of our sockets.
func (c *Client) acceptPeers(ctx context.Context, ln *quic.Listener, pa path) {
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		c.admitPeer(conn, pa)
	}
}

// admitPeer hands an accepted connection to its peer, if the peer is a
// source of ours; the peer serves it.
func (c *Client) admitPeer(conn *quic.Conn, pa path) {
	id, _ := identity.PeerIDOf(conn.ConnectionState().TLS)
	c.mu.Lock()
	p := c.peers[id]
	c.mu.Unlock()
	if p == nil || !p.isSourceOfUs() || !p.serve(conn, pa) {
		_ = conn.CloseWithError(wire.ConnUnauthorized, "not a source of this client")
		return
	}
	c.log.Info("peer connected", "peer", id.Short(), "path", pa.String(), "remote", c.relayNet.Describe(conn.RemoteAddr()))
	c.changed.Notify()
}

// serveSprayWinner accepts the source's dial on the spray socket a punch
// attempt found (this side maps hard), serves it, and closes the socket
// when that connection ends or no dial came.
func (c *Client) serveSprayWinner(ctx context.Context, u *net.UDPConn) {
	tr := &quic.Transport{Conn: u}
	defer func() {
		_ = tr.Close()
		_ = u.Close()
	}()
	ln, err := tr.Listen(c.peerServerTLS(), directPeerConfig())
	if err != nil {
		c.log.Warn("listen on punched socket", "err", err)
		return
	}
	defer ln.Close()
	actx, cancel := context.WithTimeout(ctx, sprayListen)
	conn, err := ln.Accept(actx)
	cancel()
	if err != nil {
		return
	}
	c.admitPeer(conn, pathDirect)
	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
	}
}

// serveInbound accepts the streams of a connection from a source until it
// ends, and waits for them.
func (p *peer) serveInbound(conn *quic.Conn, pa path) {
	stop := context.AfterFunc(p.ctx, func() { _ = conn.CloseWithError(wire.ConnShutdown, "client stopping") })
	defer stop()
	var streams sync.WaitGroup
	defer streams.Wait() // resumable flows may outlive the connection
	if resumable(conn) {
		streams.Go(func() { p.readAcks(conn) })
	}
	for {
		st, err := conn.AcceptStream(p.ctx)
		if err != nil {
			p.c.log.Debug("peer disconnected", "peer", p.id.Short(), "path", pa.String(), "err", err)
			p.removeInbound(conn)
			return
		}
		streams.Go(func() { p.serveStream(conn, st, pa) })
	}
}

func abort(st *quic.Stream, code quic.StreamErrorCode) {
	st.CancelRead(code)
	st.CancelWrite(code)
}

// serveStream connects one stream from a source to our destination
// service.
func (p *peer) serveStream(conn *quic.Conn, st *quic.Stream, pa path) {
	c := p.c
	_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
	header, err := wire.Read(st, wire.PeerStream)
	if err != nil {
		abort(st, wire.StreamBadRequest)
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	if rm, ok := header.(*wire.Resume); ok {
		p.serveResume(conn, st, pa, rm)
		return
	}
	m := header.(*wire.Connect)
	name := m.Endpoint
	log := c.log.With("endpoint", name, "peer", p.id.Short(), "route", pa.String())
	c.mu.Lock()
	d := c.destinations[name]
	c.mu.Unlock()
	r, authorized := p.sourceRoutes(name)
	if d == nil || !authorized {
		log.Warn("refusing stream for an endpoint this peer may not use")
		abort(st, wire.StreamUnknownEndpoint)
		return
	}
	if !r.allow(pa) {
		log.Warn("refusing stream on a path the routes do not allow")
		abort(st, wire.StreamBadRequest)
		return
	}
	if wire.ProtoOf(m.Proto) != d.proto {
		log.Warn("refusing stream: the source carries another protocol", "source_proto", wire.ProtoOf(m.Proto), "proto", d.proto)
		abort(st, wire.StreamWrongProtocol)
		return
	}
	if d.proto == wire.ProtoUDP {
		p.serveFlow(conn, st, pa, m, d)
		return
	}
	// from is the source's word, and the PROXY header passes it on as is:
	// a source may claim any address, but nothing other than one. A claim
	// that is not an address is refused before the service is dialed,
	// rather than sent as "unknown", which many services take to mean the
	// connection's own address: loopback here, often trusted.
	var from netip.AddrPort
	if d.proxyProto != "" {
		if from, err = proxyproto.ParseSource(m.From); err != nil {
			log.Warn("refusing stream: the source's client address cannot go into a PROXY header", "err", err)
			abort(st, wire.StreamBadRequest)
			return
		}
	}
	defer d.openStream()()
	if m.Flow != 0 && resumable(conn) && d.kind.pipe() {
		defer p.expectFlow(m.Flow)()
	}
	if p.serveKind(conn, st, pa, m, d, from) {
		return
	}
	tc, err := d.dialService(context.Background(), d.addr)
	if err != nil {
		log.Warn("destination service unreachable", "addr", d.addr, "err", err)
		abort(st, wire.StreamDialFailed)
		return
	}
	if d.proxyProto != "" {
		if err := writeProxyHeader(tc, d.proxyProto, from); err != nil {
			log.Warn("proxy protocol header", "err", err)
			abort(st, wire.StreamDialFailed)
			_ = tc.Close()
			return
		}
	}
	if !confirm(st, m) {
		_ = tc.Close()
		return
	}
	log.Debug("connection routed", "from", m.From)
	p.carry(tc.(*net.TCPConn), st, conn, pa, name, m.Flow, false, &d.traffic, &p.traffic)
}

// confirm tells a source that asked (Connect.Ack, a source that may try
// another destination) that the service is dialed; false if the stream
// failed and was aborted.
func confirm(st *quic.Stream, m *wire.Connect) bool {
	if m.Ack && wire.Write(st, &wire.FlowReady{}) != nil {
		abort(st, wire.StreamAborted)
		return false
	}
	return true
}

func writeProxyHeader(tc net.Conn, version string, src netip.AddrPort) error {
	dst, ok := tc.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return errors.New("destination is not a TCP address")
	}
	h, err := proxyproto.Header(version, src, dst.AddrPort())
	if err != nil {
		return err
	}
	_, err = tc.Write(h)
	return err
}
