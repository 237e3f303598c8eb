package control

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/etcdkv"
	"github.com/connetd/connetd/identity"
)

// A cluster is several control nodes sharing their registries through etcd
// (docs/ha.md). Each node publishes its own clients and relays as records
// under a lease of its own, watches everyone's, and keeps the others' as
// remote sessions (remote.go). Messages for a client of another node (a
// punch and its barrier) travel as mail records to that node.
//
// Keys below the prefix:
//
//	nodes/NODE              the node is alive (its lease)
//	clients/ID              clientRecord, under the lease of the client's node
//	relays/ID               relayRecord, likewise
//	mail/NODE/FROM-SEQ      mailRecord for NODE, under the sender's lease
//	tokens                  TokenOverlay: client tokens added and revoked at run time
const (
	keyNodes   = "nodes/"
	keyClients = "clients/"
	keyRelays  = "relays/"
	keyMail    = "mail/"
	keyTokens  = "tokens"
)

// ClusterConfig is how a control server joins a cluster.
type ClusterConfig struct {
	KV     *etcdkv.Client
	Prefix string // ends in "/"
	Node   string
	// LeaseTTL bounds how long the records of a node that died silently
	// stay: long enough for its clients to reconnect to another node
	// first (so their peers see them move, not leave and come back),
	// short enough that a client that died with its node is soon gone.
	LeaseTTL time.Duration
	// Tokens is called with the shared token overlay at start and at
	// each change (nil: the daemon has none to apply).
	Tokens func(TokenOverlay)
}

// TokenOverlay is the cluster's run-time token changes (connetctl tokens
// add/revoke on any node), laid over each node's configured tokens.
type TokenOverlay struct {
	Tokens  []string `json:"tokens,omitempty"`
	Revoked []string `json:"revoked,omitempty"`
}

// Cluster states, as status reports them.
const (
	ClusterStarting = "starting"
	ClusterOK       = "ok"
	// ClusterReadOnly: etcd cannot be reached or has no quorum. Control
	// keeps serving what it knows; its own changes wait until etcd is
	// back, and token changes are refused.
	ClusterReadOnly = "read-only"
)

const (
	defaultLeaseTTL = 5 * time.Second
	// txnOps stays below etcd's default --max-txn-ops (128).
	txnOps = 100
	// retryWait is how soon a failed store operation is tried again.
	retryWait = 500 * time.Millisecond
	// forwardTTL is how long a node remembers which node a punch it
	// delivered came from, to send its client's punch_ready back there.
	forwardTTL = 10 * time.Second
	mailQueue  = 4096
)

type cluster struct {
	s      *Server
	cfg    ClusterConfig
	kv     *etcdkv.Client
	log    *slog.Logger
	lease  atomic.Int64
	mailSq atomic.Uint64
	kick   chan struct{}
	mail   chan mailRecord
	trash  chan string // keys of mail delivered here, to delete

	mu       sync.Mutex
	dirty    map[identity.ID]bool // local session changed (value: is a relay)
	putRev   map[string]int64     // key → revision of our last put of it
	forwards map[string]forward   // punch nonce (hex) → node that sent the punch
	nodes    map[string]bool      // nodes alive, by their node keys
	state    string
	err      string
	since    time.Time
}

type forward struct {
	node    string
	expires time.Time
}

// mailRecord carries one control message to a client of another node
// (Kind mailClient), or a client's punch_ready back to the node that holds
// the punch (mailReady).
type mailRecord struct {
	Node string `json:"-"` // the addressee
	Kind string `json:"kind"`
	From string `json:"from"`           // sending node
	To   string `json:"to,omitempty"`   // client ID (hex), mailClient
	Peer string `json:"peer,omitempty"` // client ID (hex) that is ready, mailReady
	Msg  []byte `json:"msg,omitempty"`  // a framed wire message, mailClient
	// Nonce of the punch, mailReady.
	Nonce []byte `json:"nonce,omitempty"`
}

const (
	mailClient = "client"
	mailReady  = "punch_ready"
)

// RunCluster joins the cluster and keeps this server's share of it until
// ctx ends. Call it before serving clients, so that none is missed; it
// returns only when ctx ends.
func (s *Server) RunCluster(ctx context.Context, cfg ClusterConfig) error {
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = defaultLeaseTTL
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	c := &cluster{
		s: s, cfg: cfg, kv: cfg.KV, log: s.log.With("node", cfg.Node),
		kick: make(chan struct{}, 1), mail: make(chan mailRecord, mailQueue), trash: make(chan string, mailQueue),
		dirty: map[identity.ID]bool{}, putRev: map[string]int64{}, forwards: map[string]forward{}, nodes: map[string]bool{},
		state: ClusterStarting, since: time.Now(),
	}
	s.reg.mu.Lock()
	s.reg.local = c.markLocked
	for id := range s.reg.clients {
		c.dirty[id] = false
	}
	for id, rs := range s.reg.relays {
		if rs.remote == nil {
			c.dirty[id] = true
		}
	}
	s.reg.mu.Unlock()
	s.cluster.Store(c)
	defer func() {
		s.reg.mu.Lock()
		s.reg.local = func(identity.ID, bool) {}
		s.reg.mu.Unlock()
		s.cluster.Store(nil)
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { c.keepLease(gctx); return nil })
	g.Go(func() error { c.publish(gctx); return nil })
	g.Go(func() error { c.sendMail(gctx); return nil })
	g.Go(func() error { c.watch(gctx); return nil })
	err := g.Wait()
	c.leave()
	return err
}

// markLocked is the registry's local hook: called with the registry locked.
func (c *cluster) markLocked(id identity.ID, relay bool) {
	c.mu.Lock()
	c.dirty[id] = relay
	c.mu.Unlock()
	c.poke()
}

func (c *cluster) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *cluster) key(parts ...string) string { return c.cfg.Prefix + strings.Join(parts, "") }

// setState records whether the store works; a change is logged once.
func (c *cluster) setState(err error) {
	c.mu.Lock()
	prev := c.state
	if err == nil {
		c.state, c.err = ClusterOK, ""
	} else {
		c.state, c.err = ClusterReadOnly, err.Error()
	}
	changed := prev != c.state
	if changed {
		c.since = time.Now()
	}
	c.mu.Unlock()
	if !changed {
		return
	}
	if err != nil {
		c.log.Warn("cluster store unavailable: serving what this node knows, read-only", "err", err)
	} else if prev != ClusterStarting {
		c.log.Info("cluster store available again: catching up")
	}
	c.s.reg.changed.Notify()
}

// keepLease holds the node's lease. A lease lost (etcd forgot it after an
// outage longer than its TTL) is replaced, and everything of this node is
// published again under the new one.
func (c *cluster) keepLease(ctx context.Context) {
	tick := time.NewTicker(c.cfg.LeaseTTL / 5)
	defer tick.Stop()
	for ctx.Err() == nil {
		if c.lease.Load() == 0 {
			if err := c.grant(ctx); err != nil {
				c.setState(err)
				if !backoff.Wait(ctx, retryWait) {
					return
				}
				continue
			}
			c.setState(nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		_, err := c.kv.KeepAliveOnce(ctx, etcdkv.LeaseID(c.lease.Load()))
		switch {
		case errors.Is(err, etcdkv.ErrLeaseNotFound):
			c.log.Warn("cluster lease expired: publishing this node's clients again")
			c.lease.Store(0)
		case err != nil && ctx.Err() == nil:
			c.setState(fmt.Errorf("renew lease: %w", err))
		case err == nil:
			c.setState(nil)
		}
	}
}

func (c *cluster) grant(ctx context.Context) error {
	id, err := c.kv.Grant(ctx, c.cfg.LeaseTTL)
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	node, _ := json.Marshal(map[string]string{"node": c.cfg.Node, "started": time.Now().UTC().Format(time.RFC3339)})
	if _, err := c.kv.Put(ctx, c.key(keyNodes, c.cfg.Node), node, id); err != nil {
		return fmt.Errorf("put node key: %w", err)
	}
	c.lease.Store(int64(id))
	// Whatever was published belonged to the old lease.
	c.s.reg.mu.Lock()
	c.mu.Lock()
	clear(c.putRev)
	for id := range c.s.reg.clients {
		c.dirty[id] = false
	}
	for id, rs := range c.s.reg.relays {
		if rs.remote == nil {
			c.dirty[id] = true
		}
	}
	c.mu.Unlock()
	c.s.reg.mu.Unlock()
	c.poke()
	return nil
}

// leave withdraws this node's records at once on a clean stop, so that its
// clients' peers need not wait for the lease to expire... unless they have
// moved already: revoking the lease deletes only what is still under it.
func (c *cluster) leave() {
	id := c.lease.Load()
	if id == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.kv.Revoke(ctx, etcdkv.LeaseID(id)); err != nil {
		c.log.Debug("cluster lease not revoked on stop; it expires on its own", "err", err)
	}
}

func idKey(id identity.ID) string { return hex.EncodeToString(id[:]) }

func parseID(s string) (identity.ID, bool) {
	var id identity.ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, false
	}
	copy(id[:], b)
	return id, true
}

// ClusterStatus is the cluster part of a control server's status.
type ClusterStatus struct {
	Node  string `json:"node"`
	Store string `json:"store"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	Since string `json:"since"`
	// Nodes are the other nodes alive, with the clients each holds.
	Nodes         []ClusterNode `json:"nodes"`
	RemoteClients int           `json:"remote_clients"`
}

// ClusterNode is one other node of the cluster.
type ClusterNode struct {
	Name    string `json:"name"`
	Clients int    `json:"clients"`
}

func (c *cluster) status() *ClusterStatus {
	counts := c.s.reg.remoteCounts()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &ClusterStatus{Node: c.cfg.Node, Store: "etcd", State: c.state, Error: c.err, Since: c.since.UTC().Format(time.RFC3339), Nodes: []ClusterNode{}}
	for n := range c.nodes {
		if n != c.cfg.Node {
			st.Nodes = append(st.Nodes, ClusterNode{Name: n, Clients: counts[n]})
		}
	}
	for _, n := range counts {
		st.RemoteClients += n
	}
	sortNodes(st.Nodes)
	return st
}
