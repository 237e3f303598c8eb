// Package relay is the relay server: clients the control server authorized
// for an endpoint connect to it over QUIC, and it forwards the opaque relay
// data frames between them (see wire.RelayFrameData). It never holds the
// peers' keys: what it forwards is their own end-to-end encrypted QUIC.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/changes"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/relayconn"
	"github.com/connetd/connetd/wire"
)

// Config is what a relay server needs.
type Config struct {
	Identity *identity.Identity
	Conn     *net.UDPConn // bound or socket-activated
	Logger   *slog.Logger
	// StatelessResetKey lets clients learn at once that a restarted relay
	// lost their connection.
	StatelessResetKey *quic.StatelessResetKey
	// ObserveForwarded, if set, sees every frame the relay forwards, after
	// its ID was rewritten and before it is sent. It is for tests (which
	// check that the relay handles only ciphertext); it runs on the read
	// path and must not keep the frame.
	ObserveForwarded func(frame []byte)
}

type pairKey [2 * len(identity.ID{})]byte

func keyOf(from, to identity.ID) pairKey {
	var k pairKey
	copy(k[:], from[:])
	copy(k[len(from):], to[:])
	return k
}

// Server is a running relay.
type Server struct {
	cfg  Config
	log  *slog.Logger
	conn *relayconn.ServerConn
	tr   *quic.Transport

	initErr error // the socket could not be set up; Run returns it

	auth    atomic.Pointer[authTable]
	clients atomic.Pointer[clientTable]

	// mu serializes writers of clients and auth; readers load snapshots.
	mu       sync.Mutex
	counters map[pairKey]*atomic.Int64 // survive auth updates
	lastScan atomic.Int64              // when findMoved last looked (Unix ns)

	forwarded atomic.Int64 // packets
	dropped   [dropReasons]atomic.Int64

	ctlMu            sync.Mutex
	ctlAddr, ctlNode string // the control linked to by RunControlList

	changed changes.Signal // clients, authorized endpoints or byte counters changed
	// trafficNotified is when forwarding last fired changed (Unix ns), so
	// that counters announce themselves at most once per trafficNotify.
	trafficNotified atomic.Int64
}

// trafficNotify is the least time between two Changed wake-ups caused by
// byte counters.
const trafficNotify = time.Second

// New wraps cfg.Conn; Run serves it.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		counters: map[pairKey]*atomic.Int64{},
	}
	s.auth.Store(&authTable{known: map[identity.ID]bool{}, pairs: map[pairKey]*atomic.Int64{}})
	s.clients.Store(&clientTable{byAddr: map[netip.AddrPort]*clientSession{}, byID: map[identity.ID]*clientSession{}})
	conn, err := relayconn.NewServer(cfg.Conn, s.route)
	if err != nil {
		// Run reports it; the transport over the bare socket only lets
		// Close work as usual.
		s.initErr = fmt.Errorf("relay socket %s: %w", cfg.Conn.LocalAddr(), err)
		s.tr = &quic.Transport{Conn: cfg.Conn}
		return s
	}
	s.conn = conn
	s.tr = &quic.Transport{Conn: s.conn, StatelessResetKey: cfg.StatelessResetKey}
	return s
}

// Transport is the relay socket's QUIC transport; the relay also dials
// control from it.
func (s *Server) Transport() *quic.Transport { return s.tr }

func (s *Server) tlsConfig() *tls.Config {
	return s.cfg.Identity.ServerTLS(wire.ALPNClientRelay, func(id identity.ID) bool {
		return s.auth.Load().known[id]
	})
}

// Run serves clients until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.initErr != nil {
		return s.initErr
	}
	ln, err := s.tr.Listen(s.tlsConfig(), quicconf.Control())
	if err != nil {
		return fmt.Errorf("relay listen on %s: %w", s.cfg.Conn.LocalAddr(), err)
	}
	s.log.Info("relay listening", "addr", s.cfg.Conn.LocalAddr().String(), "relay", s.cfg.Identity.ID.Short())
	ctx, cancel := context.WithCancel(ctx)
	var clients errgroup.Group // a client's end is its own business: none returns an error
	defer clients.Wait()
	defer cancel()
	defer ln.Close()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay accept: %w", err)
		}
		clients.Go(func() error {
			s.serveClient(ctx, conn)
			return nil
		})
	}
}

func (s *Server) serveClient(ctx context.Context, conn *quic.Conn) {
	id, _ := identity.PeerIDOf(conn.ConnectionState().TLS)
	addr, ok := remoteOf(conn)
	if !ok {
		_ = conn.CloseWithError(wire.ConnProtocol, "unexpected address")
		return
	}
	cs := &clientSession{id: id, conn: conn}
	cs.dest.Store(&relayconn.Dest{Addr: addr, Local: localOf(conn)})
	if old := s.register(cs); old != nil {
		_ = old.conn.CloseWithError(wire.ConnReplaced, "replaced by a newer connection")
	}
	s.changed.Notify()
	log := s.log.With("client", id.Short(), "remote", addr.String())
	// The welcome tells the client that its certificate was accepted (in
	// TLS 1.3 its handshake ends before ours does) and what address we see.
	if err := s.welcome(ctx, conn, addr); err != nil {
		log.Debug("relay welcome failed", "err", err)
	} else {
		log.Info("relay client connected")
	}
	// A client that moves (its NAT rebound) keeps its connection, which
	// quic-go migrates; the forwarding path follows it (findMoved).
	select {
	case <-ctx.Done():
		_ = conn.CloseWithError(wire.ConnShutdown, "relay shutting down")
	case <-conn.Context().Done():
	}
	s.unregister(cs)
	s.changed.Notify()
	log.Info("relay client disconnected")
}

func (s *Server) welcome(ctx context.Context, conn *quic.Conn, addr netip.AddrPort) error {
	st, err := conn.OpenUniStreamSync(ctx)
	if err != nil {
		return err
	}
	_ = st.SetWriteDeadline(time.Now().Add(wire.HelloTimeout))
	if err := wire.Write(st, &wire.Welcome{Observed: addr.String()}); err != nil {
		return err
	}
	return st.Close()
}

// Close closes the relay socket.
func (s *Server) Close() error { return s.tr.Close() }

// Dialer opens an authenticated link to control: the stream after hello
// and welcome. DialControl is the one for a relay that reaches control over
// the network.
type Dialer func(ctx context.Context) (io.ReadWriteCloser, error)

// RunControl keeps a link to control up until ctx ends, applying every
// authorization table it receives. While control is away the last table
// stays in force, so relayed flows go on. It returns nil when ctx ends.
func (s *Server) RunControl(ctx context.Context, dial Dialer) error {
	bo := backoff.New(100*time.Millisecond, time.Second)
	for ctx.Err() == nil {
		rw, err := dial(ctx)
		if err != nil {
			var werr *wire.Error
			if errors.As(err, &werr) {
				s.log.Error("control refused relay", "err", err)
			} else if ctx.Err() == nil {
				s.log.Warn("relay cannot reach control", "err", err)
			}
			if !bo.Sleep(ctx) {
				return nil
			}
			continue
		}
		bo.Reset()
		s.log.Info("relay connected to control")
		if err := s.serveControl(ctx, rw); ctx.Err() == nil {
			s.log.Warn("relay lost control", "err", err)
		}
	}
	return nil
}

// serveControl reads one link until it fails or ctx ends, and closes it.
func (s *Server) serveControl(ctx context.Context, rw io.ReadWriteCloser) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.readControl(rw) })
	g.Go(func() error {
		// Closing the link is what unblocks the reader when ctx ends.
		<-gctx.Done()
		_ = rw.Close()
		return nil
	})
	return g.Wait()
}

// Status is the relay's JSON status.
type Status struct {
	ID string `json:"id"`
	// ControlAddr and ControlNode are the control address the relay is
	// linked to and that node's name; absent while it is not, and in the
	// server role, whose relay is linked in-process.
	ControlAddr string           `json:"control_addr,omitempty"`
	ControlNode string           `json:"control_node,omitempty"`
	Clients     []ClientStatus   `json:"clients"`
	Endpoints   []EndpointStatus `json:"endpoints"`
	Packets     int64            `json:"packets_forwarded"`
	Dropped     int64            `json:"packets_dropped"`
	// DroppedBy splits Dropped by reason (the Drop* names).
	DroppedBy map[string]int64 `json:"packets_dropped_by_reason"`
	// ReadBatches counts the socket's reads by datagrams per read, in
	// the buckets of relayconn.BatchBuckets (the last: above them);
	// ReadDatagrams is the datagrams of all reads. For metrics.
	ReadBatches   []int64 `json:"-"`
	ReadDatagrams int64   `json:"read_datagrams"`
	// Reads is how many reads of the socket returned datagrams (the sum
	// of ReadBatches): datagrams per read says how well reads batch.
	Reads int64 `json:"reads"`
	// Pairs is the bytes forwarded per authorized (from, to) pair, for
	// metrics; the JSON status keeps to the per-endpoint sums.
	Pairs []PairStatus `json:"-"`
}

// PairStatus is the payload bytes forwarded from one client to another.
type PairStatus struct {
	From, To string // client IDs
	Bytes    int64
}

// ClientStatus is one connected client.
type ClientStatus struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// EndpointStatus is one authorized endpoint; Bytes counts payload bytes
// forwarded between its sources and destinations (both directions).
type EndpointStatus struct {
	Name         string `json:"name"`
	Sources      int    `json:"sources"`
	Destinations int    `json:"destinations"`
	Bytes        int64  `json:"bytes"`
}

// Changed is closed at the next change of the relay's clients or authorized
// endpoints, and, while traffic flows, at most once per second for the byte
// and packet counters (an idle relay does not wake anyone).
func (s *Server) Changed() <-chan struct{} { return s.changed.C() }

// Counts is how many clients are connected and how many endpoints the
// authorization table holds: what STATUS= says, at each change, without
// the per-pair walk of Status.
func (s *Server) Counts() (clients, endpoints int) {
	return len(s.clients.Load().byID), len(s.auth.Load().endpoints)
}

// Status reports the relay.
func (s *Server) Status() Status {
	var failed int64
	var reads []int64
	var datagrams int64
	if s.conn != nil {
		failed = s.conn.SendFailures()
		reads, datagrams = s.conn.ReadBatches().Snapshot()
	}
	st := Status{ID: s.cfg.Identity.ID.String(), Clients: []ClientStatus{}, Endpoints: []EndpointStatus{},
		Packets: s.forwarded.Load() - failed, DroppedBy: map[string]int64{DropSendFailed: failed},
		ReadBatches: reads, ReadDatagrams: datagrams}
	for _, n := range reads {
		st.Reads += n
	}
	st.ControlAddr, st.ControlNode = s.control()
	for r := range s.dropped {
		st.DroppedBy[dropNames[r]] = s.dropped[r].Load()
	}
	for _, n := range st.DroppedBy {
		st.Dropped += n
	}
	t := s.auth.Load()
	for _, ep := range t.endpoints {
		es := EndpointStatus{Name: ep.Endpoint, Sources: len(ep.Sources), Destinations: len(ep.Destinations)}
		for _, a := range ep.Sources {
			for _, b := range ep.Destinations {
				if c := t.pairs[keyOf(a, b)]; c != nil {
					es.Bytes += c.Load()
				}
				if c := t.pairs[keyOf(b, a)]; c != nil {
					es.Bytes += c.Load()
				}
			}
		}
		st.Endpoints = append(st.Endpoints, es)
	}
	for k, c := range t.pairs {
		var from, to identity.ID
		copy(from[:], k[:len(from)])
		copy(to[:], k[len(from):])
		st.Pairs = append(st.Pairs, PairStatus{From: from.String(), To: to.String(), Bytes: c.Load()})
	}
	for id, c := range s.clients.Load().byID {
		addr := c.dest.Load().Addr
		if now, ok := remoteOf(c.conn); ok {
			addr = now // also when it has not yet sent a frame from there
		}
		st.Clients = append(st.Clients, ClientStatus{ID: id.String(), Addr: addr.String()})
	}
	sort.Slice(st.Clients, func(i, j int) bool { return st.Clients[i].ID < st.Clients[j].ID })
	return st
}
