// Package client is the connetd client: it registers sources and
// destinations with the control server, keeps QUIC connections to the peers
// control names (directly when a path exists, through a relay otherwise),
// and carries each TCP connection over its own stream.
//
// Who owns what: Client keeps the endpoints and the index of peers; each
// peer owns its connections and the goroutines that keep them (peer.go);
// controlLink owns the control session and the only goroutine that writes
// to it (controllink.go); relayLinks owns the links to relays (relays.go);
// package traversal owns NAT discovery, port mapping and hole punching.
//
// Lock order: Client.mu, then peer.mu. controlLink, relayLinks and the
// traversal have locks of their own that are taken last: they never call
// out while holding them. Nothing writes to the network while holding any
// of these locks: control messages are queued, connections are closed after
// unlocking.
package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/changes"
	"github.com/connetd/connetd/internal/ctladdr"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/relayconn"
	"github.com/connetd/connetd/traversal"
)

// Config is what a client needs; the daemon builds it from the config file.
type Config struct {
	Token      string
	ServerAddr string      // the control address, or several comma-separated to fail over between in order
	ServerTLS  *tls.Config // roots and server name for the control server
	// Resolver looks up control host names (each A/AAAA record is an
	// address to fail over to); nil is the system's.
	Resolver ctladdr.Resolver

	// DirectConn carries the control connection and direct peer
	// connections (one socket, so control observes the public mapping).
	DirectConn *net.UDPConn
	// RelayConn carries relay connections and relayed peer connections.
	RelayConn *net.UDPConn

	// PortMapping asks the router (NAT-PMP, PCP, UPnP) to map the direct
	// port, when true.
	PortMapping bool

	// DirectStatelessResetKey, when set, makes the direct socket answer
	// packets of connections it no longer knows with a stateless reset, so
	// that peers of a restarted client give up at once (connet's
	// direct-stateless-reset-key).
	DirectStatelessResetKey *quic.StatelessResetKey
	// RelayStatelessResetKey does the same for the relay socket: a
	// restarted client answers its peers' relayed connections of the old
	// process with a reset, through the relay, instead of leaving them to
	// hang until their idle timeout (the old process's close may not have
	// got through the relay link it was closing too).
	RelayStatelessResetKey *quic.StatelessResetKey

	// Identity is the client's key and certificate; nil makes a new one.
	// Keeping it across restarts (the daemon stores it) lets peers know a
	// restarted client as the same peer and dial it again at once.
	Identity *identity.Identity

	// MaxStreams caps concurrent connections from one source peer; 0 means
	// quicconf.MaxPeerStreams.
	MaxStreams int64

	Version string
	Logger  *slog.Logger
}

// Client is a running client. Endpoints can be added and removed at any time.
type Client struct {
	cfg Config
	log *slog.Logger
	id  *identity.Identity

	direct   *quic.Transport
	relayNet *relayconn.Conn
	relayTr  *quic.Transport
	trav     *traversal.Traversal
	ctl      *controlLink
	relays   *relayLinks

	changed   changes.Signal // what Status shows changed
	traffic   trafficNote    // byte counters moved
	flowMoves flowMoves      // resumable flows that changed path
	// peerProtos is what the client offers on peer connections
	// (peerALPNs; tests take /2 away to act as an older client).
	peerProtos []string
	paths      pathChanges // dialed paths up and down, by reason
	// timeToDirect has each peer's time to its first direct path.
	timeToDirect *histogram
	// udpFlows is the destination side of UDP flows; muxDrops counts
	// datagrams from peers that named no flow.
	udpFlows flowTable
	muxDrops muxDrops

	registered     chan struct{} // closed on the first welcome from control
	registeredOnce sync.Once

	tasks sync.WaitGroup // endpoint and relay-link goroutines; Run waits

	mu           sync.Mutex
	runCtx       context.Context // nil unless Run is running: nothing starts then
	sources      map[string]*source
	destinations map[string]*destination
	peers        map[identity.ID]*peer
	peersDirty   chan struct{} // a peer may have become unused
}

// New prepares a client; Run starts it.
func New(cfg Config) (*Client, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	id := cfg.Identity
	if id == nil {
		var err error
		if id, err = identity.New("connetd-client"); err != nil {
			return nil, fmt.Errorf("client identity: %w", err)
		}
	}
	c := &Client{
		peerProtos:   peerALPNs,
		cfg:          cfg,
		log:          log,
		id:           id,
		sources:      map[string]*source{},
		destinations: map[string]*destination{},
		peers:        map[identity.ID]*peer{},
		peersDirty:   make(chan struct{}, 1),
		registered:   make(chan struct{}),
		timeToDirect: newHistogram(timeToDirectBounds),
	}
	c.traffic.kick = make(chan struct{}, 1)
	// Both sockets read through relayconn: batched reads with UDP GRO,
	// which quic-go does not ask for itself (bench: direct ~0.8× → ~1.0×
	// a bare quic-go stream). The direct socket names no relays, so no
	// frame is accepted on it.
	c.direct = &quic.Transport{Conn: relayconn.New(cfg.DirectConn), StatelessResetKey: cfg.DirectStatelessResetKey}
	c.relayNet = relayconn.New(cfg.RelayConn)
	c.relayTr = &quic.Transport{Conn: c.relayNet, StatelessResetKey: cfg.RelayStatelessResetKey}
	c.ctl = &controlLink{c: c, log: log}
	c.relays = &relayLinks{c: c, links: map[identity.ID]*relayLink{}}
	c.trav = traversal.New(traversal.Config{
		Transport: c.direct, Conn: cfg.DirectConn, Self: id.ID, PortMapping: cfg.PortMapping,
		Control: c.ctl, Changed: c.wakePeers, NetworkChanged: c.networkChanged,
		ServeSpray: c.serveSprayWinner, Logger: log,
	})
	return c, nil
}

// ID is the client's peer ID.
func (c *Client) ID() identity.ID { return c.id.ID }

// Run serves until ctx ends, then closes everything.
func (c *Client) Run(ctx context.Context) error {
	peerTLS := c.peerServerTLS()
	peerConf := quicconf.Peer()
	if c.cfg.MaxStreams > 0 {
		peerConf.MaxIncomingStreams = c.cfg.MaxStreams
	}
	directLn, err := c.direct.Listen(peerTLS, peerConf)
	if err != nil {
		return fmt.Errorf("listen for direct peers on %s: %w", c.cfg.DirectConn.LocalAddr(), err)
	}
	relayConf := peerConf.Clone()
	relayConf.InitialPacketSize = quicconf.RelayedPeer().InitialPacketSize
	relayLn, err := c.relayTr.Listen(peerTLS, relayConf)
	if err != nil {
		directLn.Close()
		return fmt.Errorf("listen for relayed peers: %w", err)
	}
	c.log.Info("client started", "client", c.id.ID.Short(), "direct_addr", c.cfg.DirectConn.LocalAddr().String())

	g, ctx := errgroup.WithContext(ctx)
	c.mu.Lock()
	c.runCtx = ctx
	for _, s := range c.sources {
		c.startSourceLocked(s)
	}
	for _, d := range c.destinations {
		c.startDestinationLocked(d)
	}
	c.mu.Unlock()
	g.Go(func() error { return c.trav.Run(ctx) })
	g.Go(func() error { c.acceptPeers(ctx, directLn, pathDirect); return nil })
	g.Go(func() error { c.acceptPeers(ctx, relayLn, pathRelay); return nil })
	g.Go(func() error { c.ctl.run(ctx); return nil })
	g.Go(func() error { c.retirePeers(ctx); return nil })
	g.Go(func() error { c.traffic.run(ctx, &c.changed); return nil })
	<-ctx.Done()
	// Everything watches ctx: connections are closed with CONNECTION_CLOSE
	// so peers and control notice at once, and every flow ends with its
	// connection.
	directLn.Close()
	relayLn.Close()
	err = g.Wait()
	c.mu.Lock()
	c.runCtx = nil
	peers := make([]*peer, 0, len(c.peers))
	for _, p := range c.peers {
		peers = append(peers, p)
	}
	for _, d := range c.destinations {
		d.stop()
	}
	c.mu.Unlock()
	for _, p := range peers {
		p.close("client stopping")
	}
	c.tasks.Wait()
	_ = c.direct.Close()
	_ = c.relayTr.Close()
	return err
}

// spawnLocked runs f as one of Run's tasks; false once Run has ended.
func (c *Client) spawnLocked(f func(ctx context.Context)) bool {
	ctx := c.runCtx
	if ctx == nil {
		return false
	}
	c.tasks.Go(func() { f(ctx) })
	return true
}

// Registered is closed once the client has first been welcomed by control
// and has announced its endpoints.
func (c *Client) Registered() <-chan struct{} { return c.registered }

// Changed is closed at the next change of what Status reports:
// endpoints, peers and their paths, control, relays, NAT behaviour, port
// mapping, and byte counters (at most once a second while bytes move).
// Take a new channel after each wake-up.
func (c *Client) Changed() <-chan struct{} { return c.changed.C() }

// Running reports whether Run is serving. It takes the client's main lock,
// so a deadlock there shows as a Running that never returns: the watchdog
// calls it.
func (c *Client) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runCtx != nil
}

// isAllowedSource pins inbound peers: only clients control named as sources
// of one of our destinations may connect.
func (c *Client) isAllowedSource(id identity.ID) bool {
	c.mu.Lock()
	p := c.peers[id]
	c.mu.Unlock()
	return p != nil && p.isSourceOfUs()
}

// trafficNote tells status watchers that byte counters moved: at once
// when bytes start to move, then at most once a second while they do, and
// once more after they stop, so the last count is shown too.
type trafficNote struct {
	dirty atomic.Bool // bytes moved since the last notification
	kick  chan struct{}
}

// moved is called on the data path; while a notification is pending it
// costs one atomic load.
func (t *trafficNote) moved() {
	if !t.dirty.Load() && t.dirty.CompareAndSwap(false, true) {
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
}

func (t *trafficNote) run(ctx context.Context, sig *changes.Signal) {
	pause := newSleeper()
	defer pause.stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
		}
		for t.dirty.Swap(false) {
			sig.Notify()
			if !pause.sleep(ctx, trafficEvery) {
				return
			}
		}
	}
}
