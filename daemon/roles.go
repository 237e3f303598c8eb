package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/ctladdr"
	"github.com/connetd/connetd/relay"
)

// readyOnce is a ready channel for roles that are serving as soon as their
// serve loop starts.
type readyOnce struct {
	once sync.Once
	ch   chan struct{}
}

func newReadyOnce() readyOnce               { return readyOnce{ch: make(chan struct{})} }
func (r *readyOnce) ready() <-chan struct{} { return r.ch }
func (r *readyOnce) done()                  { r.once.Do(func() { close(r.ch) }) }

// serverRole is control and relay in one process; the relay talks to
// control over an in-process pipe instead of QUIC.
type serverRole struct {
	readyOnce
	cfg      *config.Server
	ctrl     *control.Server
	clientsU *net.UDPConn
	clientsT *quic.Transport
	rel      *relay.Server
	relayU   *net.UDPConn
	relayID  *identity.Identity
	advert   string
	cluster  *clusterJoin
}

func newServer(d *Daemon, cfg *config.Server) (_ role, err error) {
	r := &serverRole{readyOnce: newReadyOnce(), cfg: cfg}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	resetKey := d.resetKey
	if r.ctrl, r.clientsU, r.clientsT, err = d.controlServer(cfg.CertFile, cfg.KeyFile, cfg.Addr, cfg.NodeName, serverAuth(cfg), controlLimits(cfg.Limits)); err != nil {
		return nil, err
	}
	if r.cluster, err = d.joinCluster(cfg.ClusterStore, cfg.NodeName); err != nil {
		return nil, err
	}
	if r.relayU, err = d.udp(fdRelay, cfg.RelayAddr); err != nil {
		return nil, err
	}
	if r.relayID, err = storedIdentity(d.store, "relay"); err != nil {
		return nil, err
	}
	r.rel = relay.New(relay.Config{Identity: r.relayID, Conn: r.relayU, Logger: d.log, StatelessResetKey: resetKey})
	r.advert = net.JoinHostPort(cfg.RelayHostname, strconv.Itoa(r.relayU.LocalAddr().(*net.UDPAddr).Port))
	return r, nil
}

func (r *serverRole) name() string        { return "server" }
func (r *serverRole) statusAddr() string  { return r.cfg.StatusAddr }
func (r *serverRole) metricsAddr() string { return r.cfg.MetricsAddr }

func (r *serverRole) serve(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.cluster.run(ctx, r.ctrl) })
	g.Go(func() error { return r.ctrl.ServeClients(ctx, r.clientsT) })
	g.Go(func() error { return r.rel.Run(ctx) })
	g.Go(func() error {
		// Each in-process link to control is owned by this goroutine.
		var links sync.WaitGroup
		defer links.Wait()
		r.rel.RunControl(ctx, func(ctx context.Context) (io.ReadWriteCloser, error) {
			ours, theirs := net.Pipe()
			links.Go(func() {
				_ = r.ctrl.AttachRelay(ctx, theirs, r.relayID.DER, r.advert)
				theirs.Close()
			})
			return ours, nil
		})
		return nil
	})
	r.done()
	return g.Wait()
}

func (r *serverRole) snapshot() Snapshot {
	ctl, rel := r.ctrl.Status(), r.rel.Status()
	return Snapshot{Control: &ctl, Relay: &rel, Summary: r.summary()}
}

func (r *serverRole) summary() string {
	return controlSummary(r.ctrl.Summary()) + "; " + relaySummary(r.rel)
}

func (r *serverRole) changes() []<-chan struct{} {
	return []<-chan struct{}{r.ctrl.Changed(), r.rel.Changed()}
}

// alive takes control's and the relay's locks by the only way they offer,
// their status: both are lists of connected peers, without the per-path
// statistics that make a client's status costly.
func (r *serverRole) alive() { r.ctrl.Status(); r.rel.Status() }

func (r *serverRole) apply(f *config.File) ([]string, error) {
	n := f.Server
	r.ctrl.SetAuth(serverAuth(n))
	r.ctrl.SetLimits(controlLimits(n.Limits))
	notes := changed(map[string][2]string{
		"server.addr": {r.cfg.Addr, n.Addr}, "server.relay-addr": {r.cfg.RelayAddr, n.RelayAddr},
		"server.relay-hostname": {r.cfg.RelayHostname, n.RelayHostname}, "server.cert-file": {r.cfg.CertFile, n.CertFile},
		"server.key-file": {r.cfg.KeyFile, n.KeyFile}, "server.status-addr": {r.cfg.StatusAddr, n.StatusAddr}, "server.metrics-addr": {r.cfg.MetricsAddr, n.MetricsAddr},
		"server.store-dir": {r.cfg.StoreDir, n.StoreDir},
	})
	return notes, nil
}

func (r *serverRole) close() {
	if r.clientsT != nil {
		_ = r.clientsT.Close()
	}
	if r.rel != nil {
		_ = r.rel.Close()
	}
	closeAll(r.clientsU, r.relayU)
}

func serverAuth(cfg *config.Server) control.Auth {
	return control.Auth{ClientTokens: cfg.TokenValues, ClientIP: cfg.IPRestrict, ClientTokenRestricts: cfg.TokenRestricts}
}

func controlAuth(cfg *config.Control) control.Auth {
	return control.Auth{
		ClientTokens: cfg.ClientsTokenValues, ClientIP: cfg.ClientsIPRestrict, ClientTokenRestricts: cfg.ClientsTokenRestricts,
		RelayTokens: cfg.RelaysTokenValues, RelayIP: cfg.RelaysIPRestrict, RelayTokenRestricts: cfg.RelaysTokenRestricts,
	}
}

func controlLimits(l config.Limits) control.Limits {
	return control.Limits{SessionsPerToken: l.MaxSessionsPerToken, EndpointsPerClient: l.MaxEndpointsPerClient,
		PeersPerEndpoint: l.MaxPeersPerEndpoint, PunchesPerMinute: l.MaxPunchesPerMinute}
}

func controlSummary(st control.Summary) string {
	s := fmt.Sprintf("%s, %s, %s", count(st.Clients, "client"), count(st.Endpoints, "endpoint"), count(st.Relays, "relay"))
	if c := st.Cluster; c != nil {
		switch c.State {
		case control.ClusterReadOnly:
			s += fmt.Sprintf("; cluster node %s READ-ONLY: etcd unavailable (%s)", c.Node, c.Error)
		default:
			s += fmt.Sprintf("; cluster node %s %s, %s, %d remote clients", c.Node, c.State, count(c.OtherNodes, "other node"), c.RemoteClients)
		}
	}
	return s
}

func relaySummary(rel *relay.Server) string {
	clients, endpoints := rel.Counts()
	return fmt.Sprintf("relay: %s, %s", count(clients, "client"), count(endpoints, "endpoint"))
}

func count(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// changed lists the settings whose old and new values differ.
func changed(settings map[string][2]string) []string {
	var out []string
	for name, v := range settings {
		if v[0] != v[1] {
			out = append(out, name)
		}
	}
	return out
}

func closeAll(conns ...*net.UDPConn) {
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
}

// controlRole is a standalone control server; relays connect over QUIC.
type controlRole struct {
	readyOnce
	cfg              *config.Control
	ctrl             *control.Server
	clientsU, relayU *net.UDPConn
	clientsT, relayT *quic.Transport
	cluster          *clusterJoin
}

func newControl(d *Daemon, cfg *config.Control) (_ role, err error) {
	r := &controlRole{readyOnce: newReadyOnce(), cfg: cfg}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.ctrl, r.clientsU, r.clientsT, err = d.controlServer(cfg.CertFile, cfg.KeyFile, cfg.ClientsAddr, cfg.NodeName, controlAuth(cfg), controlLimits(cfg.Limits)); err != nil {
		return nil, err
	}
	if r.cluster, err = d.joinCluster(cfg.ClusterStore, cfg.NodeName); err != nil {
		return nil, err
	}
	if r.relayU, err = d.udp(fdRelays, cfg.RelaysAddr); err != nil {
		return nil, err
	}
	r.relayT = &quic.Transport{Conn: r.relayU, StatelessResetKey: d.resetKey}
	return r, nil
}

// controlServer is what the server and control roles share: the control
// server with its certificate, on the clients' socket.
func (d *Daemon) controlServer(certFile, keyFile, addr, nodeName string, auth control.Auth, limits control.Limits) (*control.Server, *net.UDPConn, *quic.Transport, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load control certificate: %w", err)
	}
	conn, err := d.udp(fdControl, addr)
	if err != nil {
		return nil, nil, nil, err
	}
	ctrl := control.New(control.Config{Cert: cert, Auth: auth, Limits: limits, NodeName: nodeName, Logger: d.log})
	return ctrl, conn, &quic.Transport{Conn: conn, StatelessResetKey: d.resetKey}, nil
}

func (r *controlRole) name() string        { return "control" }
func (r *controlRole) statusAddr() string  { return r.cfg.StatusAddr }
func (r *controlRole) metricsAddr() string { return r.cfg.MetricsAddr }
func (r *controlRole) alive()              { r.ctrl.Status() } // as serverRole.alive

func (r *controlRole) snapshot() Snapshot {
	st := r.ctrl.Status()
	return Snapshot{Control: &st, Summary: controlSummary(r.ctrl.Summary())}
}

func (r *controlRole) summary() string { return controlSummary(r.ctrl.Summary()) }

func (r *controlRole) changes() []<-chan struct{} { return []<-chan struct{}{r.ctrl.Changed()} }

func (r *controlRole) serve(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.cluster.run(ctx, r.ctrl) })
	g.Go(func() error { return r.ctrl.ServeClients(ctx, r.clientsT) })
	g.Go(func() error { return r.ctrl.ServeRelays(ctx, r.relayT) })
	r.done()
	return g.Wait()
}

func (r *controlRole) apply(f *config.File) ([]string, error) {
	n := f.Control
	r.ctrl.SetAuth(controlAuth(n))
	r.ctrl.SetLimits(controlLimits(n.Limits))
	return changed(map[string][2]string{
		"control.clients-addr": {r.cfg.ClientsAddr, n.ClientsAddr}, "control.relays-addr": {r.cfg.RelaysAddr, n.RelaysAddr},
		"control.cert-file": {r.cfg.CertFile, n.CertFile}, "control.key-file": {r.cfg.KeyFile, n.KeyFile},
		"control.status-addr": {r.cfg.StatusAddr, n.StatusAddr}, "control.metrics-addr": {r.cfg.MetricsAddr, n.MetricsAddr}, "control.store-dir": {r.cfg.StoreDir, n.StoreDir},
	}), nil
}

func (r *controlRole) close() {
	for _, t := range []*quic.Transport{r.clientsT, r.relayT} {
		if t != nil {
			_ = t.Close()
		}
	}
	closeAll(r.clientsU, r.relayU)
}

// relayRole is a standalone relay that registers with a control server.
type relayRole struct {
	readyOnce
	mu     sync.Mutex // guards cfg against a reload
	cfg    *config.Relay
	rel    *relay.Server
	udp    *net.UDPConn
	id     *identity.Identity
	advert string
	ctlTLS *tls.Config
}

func newRelay(d *Daemon, cfg *config.Relay) (_ role, err error) {
	r := &relayRole{readyOnce: newReadyOnce(), cfg: cfg}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	resetKey := d.resetKey
	if r.id, err = storedIdentity(d.store, "relay"); err != nil {
		return nil, err
	}
	if r.ctlTLS, err = serverTLS(cfg.ControlCAs, cfg.ControlName); err != nil {
		return nil, err
	}
	if r.udp, err = d.udp(fdRelay, cfg.Addr); err != nil {
		return nil, err
	}
	r.rel = relay.New(relay.Config{Identity: r.id, Conn: r.udp, Logger: d.log, StatelessResetKey: resetKey})
	r.advert = net.JoinHostPort(cfg.Hostname, strconv.Itoa(r.udp.LocalAddr().(*net.UDPAddr).Port))
	return r, nil
}

func (r *relayRole) name() string { return "relay" }

func (r *relayRole) statusAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg.StatusAddr
}

func (r *relayRole) metricsAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg.MetricsAddr
}

func (r *relayRole) alive() { r.rel.Status() } // as serverRole.alive

func (r *relayRole) snapshot() Snapshot {
	st := r.rel.Status()
	return Snapshot{Relay: &st, Summary: r.summary()}
}

func (r *relayRole) summary() string { return relaySummary(r.rel) }

func (r *relayRole) changes() []<-chan struct{} { return []<-chan struct{}{r.rel.Changed()} }

func (r *relayRole) serve(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		r.mu.Lock()
		addrs := config.ControlAddrs(r.cfg.ControlAddr)
		r.mu.Unlock()
		return r.rel.RunControlList(ctx, addrs, nil, r.dialControl)
	})
	g.Go(func() error { return r.rel.Run(ctx) })
	r.done()
	return g.Wait()
}

// apply takes a new token for the next connection to control.
func (r *relayRole) apply(f *config.File) ([]string, error) {
	n := f.Relay
	r.mu.Lock()
	defer r.mu.Unlock()
	notes := changed(map[string][2]string{
		"relay.addr": {r.cfg.Addr, n.Addr}, "relay.hostname": {r.cfg.Hostname, n.Hostname},
		"relay.control-addr": {r.cfg.ControlAddr, n.ControlAddr}, "relay.control-cas": {r.cfg.ControlCAs, n.ControlCAs}, "relay.control-name": {r.cfg.ControlName, n.ControlName},
		"relay.status-addr": {r.cfg.StatusAddr, n.StatusAddr}, "relay.metrics-addr": {r.cfg.MetricsAddr, n.MetricsAddr}, "relay.store-dir": {r.cfg.StoreDir, n.StoreDir},
	})
	keep := *r.cfg
	keep.Token, keep.TokenFile, keep.TokenValue = n.Token, n.TokenFile, n.TokenValue
	r.cfg = &keep
	return notes, nil
}

// dialControl reads the current token (a reload may have changed it) and
// leaves the protocol to relay.DialControl.
func (r *relayRole) dialControl(ctx context.Context, t ctladdr.Target, several bool) (relay.ControlLink, error) {
	r.mu.Lock()
	token := r.cfg.TokenValue
	r.mu.Unlock()
	return r.rel.DialControlTarget(ctx, t, several, r.ctlTLS, token, r.advert)
}

func (r *relayRole) close() {
	if r.rel != nil {
		_ = r.rel.Close()
	}
	closeAll(r.udp)
}
