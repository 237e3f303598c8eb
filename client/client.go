// Package client is the connetd client: it registers sources and
// destinations with the control server, keeps QUIC connections to the peers
// control names (directly when a path exists, through a relay otherwise),
// and carries each TCP connection over its own stream.
package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/relayconn"
	"github.com/connetd/connetd/wire"
)

// Config is what a client needs; the daemon builds it from the config file.
type Config struct {
	Token      string
	ServerAddr string
	ServerTLS  *tls.Config // roots and server name for the control server

	// DirectConn carries the control connection and direct peer
	// connections (one socket, so control observes the public mapping).
	DirectConn *net.UDPConn
	// RelayConn carries relay connections and relayed peer connections.
	RelayConn *net.UDPConn

	// PortMapping asks the router (NAT-PMP, PCP, UPnP) to map the direct
	// port, when true.
	PortMapping bool

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

	runCtx context.Context
	wg     sync.WaitGroup // endpoint and peer goroutines

	mu           sync.Mutex
	sources      map[string]*source
	destinations map[string]*destination
	peers        map[identity.ID]*peer
	relays       map[identity.ID]*relayLink
	ctl          *controlStream // nil while control is unreachable
	observed     string
	changed      chan struct{} // closed and replaced when any path changes

	registered     chan struct{} // closed on the first welcome from control
	registeredOnce sync.Once

	trav *traversal // NAT traversal: candidates, NAT behaviour, punching
}

// New prepares a client; Run starts it.
func New(cfg Config) (*Client, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	id, err := identity.New("connetd-client")
	if err != nil {
		return nil, fmt.Errorf("client identity: %w", err)
	}
	c := &Client{
		cfg:          cfg,
		log:          log,
		id:           id,
		sources:      map[string]*source{},
		destinations: map[string]*destination{},
		peers:        map[identity.ID]*peer{},
		relays:       map[identity.ID]*relayLink{},
		changed:      make(chan struct{}),
		registered:   make(chan struct{}),
	}
	c.direct = &quic.Transport{Conn: cfg.DirectConn}
	c.trav = newTraversal(cfg.DirectConn)
	c.relayNet = relayconn.New(cfg.RelayConn)
	c.relayTr = &quic.Transport{Conn: c.relayNet}
	return c, nil
}

// ID is the client's peer ID.
func (c *Client) ID() identity.ID { return c.id.ID }

// Run serves until ctx ends, then closes everything.
func (c *Client) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.runCtx = ctx
	for _, s := range c.sources {
		c.startSourceLocked(s)
	}
	for _, d := range c.destinations {
		c.startDestinationLocked(d)
	}
	c.mu.Unlock()

	peerTLS := c.id.ServerTLS(wire.ALPNPeer, c.isAllowedSource)
	peerConf := quicconf.Peer()
	if c.cfg.MaxStreams > 0 {
		peerConf.MaxIncomingStreams = c.cfg.MaxStreams
	}
	directLn, err := c.direct.Listen(peerTLS, peerConf)
	if err != nil {
		return fmt.Errorf("listen for direct peers on %s: %w", c.cfg.DirectConn.LocalAddr(), err)
	}
	relayLn, err := c.relayTr.Listen(peerTLS, peerConf)
	if err != nil {
		return fmt.Errorf("listen for relayed peers: %w", err)
	}
	c.log.Info("client started", "client", c.id.ID.Short(), "direct_addr", c.cfg.DirectConn.LocalAddr().String())

	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); c.runTraversal(ctx) }()
	go func() { defer wg.Done(); c.acceptPeers(ctx, directLn, pathDirect) }()
	go func() { defer wg.Done(); c.acceptPeers(ctx, relayLn, pathRelay) }()
	go func() { defer wg.Done(); c.runControl(ctx) }()
	<-ctx.Done()
	// Everything below watches ctx: connections are closed with
	// CONNECTION_CLOSE so peers and control notice at once, and every flow
	// ends with its connection.
	directLn.Close()
	relayLn.Close()
	c.mu.Lock()
	for _, d := range c.destinations {
		if d.fileServer != nil {
			_ = d.fileServer.Close()
		}
	}
	c.mu.Unlock()
	wg.Wait()
	c.wg.Wait()
	_ = c.direct.Close()
	_ = c.relayTr.Close()
	return nil
}

// Registered is closed once the client has first been welcomed by control
// and has announced its endpoints.
func (c *Client) Registered() <-chan struct{} { return c.registered }

// Changed is closed at the next change of what Status reports, except
// byte counters and RTTs: endpoints, peers and their paths, control, relays,
// NAT behaviour and port mapping. Take a new channel after each wake-up.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// notifyChangedLocked wakes everyone waiting for a path.
func (c *Client) notifyChangedLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// isAllowedSource pins inbound peers: only clients control named as sources
// of one of our destinations may connect.
func (c *Client) isAllowedSource(id identity.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[id]
	return p != nil && p.isSourceOfUs()
}
