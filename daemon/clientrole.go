package daemon

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/wire"
)

// clientRole is a client with the sources and destinations of its
// configuration.
type clientRole struct {
	d             *Daemon
	cfg           *config.Client
	c             *client.Client
	direct, relay *net.UDPConn
}

// resetKeyText lets changed compare reset keys without logging them.
func resetKeyText(k *[32]byte) string {
	if k == nil {
		return ""
	}
	return fmt.Sprintf("%x", sha256.Sum256(k[:]))
}

func newClient(d *Daemon, cfg *config.Client) (_ role, err error) {
	r := &clientRole{d: d, cfg: cfg}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	srvTLS, err := serverTLS(cfg.ServerCAs, cfg.ServerName)
	if err != nil {
		return nil, err
	}
	if r.direct, err = d.udp(fdDirect, cfg.DirectAddr); err != nil {
		return nil, err
	}
	// The relay socket is ephemeral (only the direct port is well known),
	// but kept across restarts by systemd's file descriptor store.
	if r.relay, err = r.d.lst.udp(fdClientRelay, ":0"); err != nil {
		return nil, err
	}
	tuneUDP(r.relay, d.tune, d.log)
	// The identity and the direct socket's stateless reset key are kept in
	// the store: after a restart peers know the client as the same peer,
	// and packets of connections the old process had get a stateless reset
	// (the peer's dead connection ends at once, not after its idle timeout).
	id, err := storedIdentity(d.store, "client")
	if err != nil {
		return nil, err
	}
	resetKey := (*quic.StatelessResetKey)(cfg.DirectResetKey)
	if resetKey == nil {
		resetKey = d.resetKey
	}
	r.c, err = client.New(client.Config{
		Identity: id, Token: cfg.TokenValue, ServerAddr: cfg.ServerAddr, ServerTLS: srvTLS,
		DirectConn: r.direct, RelayConn: r.relay, PortMapping: cfg.PortMapping == "auto",
		Version: d.opts.Version, Logger: d.log,
		DirectStatelessResetKey: resetKey, RelayStatelessResetKey: d.resetKey,
	})
	if err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Destinations)) {
		if err := r.addDestination(name, cfg.Destinations[name]); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Sources)) {
		if err := r.addSource(name, cfg.Sources[name]); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *clientRole) addSource(name string, s config.Source) error {
	cfg := client.SourceConfig{Addr: s.Addr, Route: s.Route, Proto: s.Proto, UDP: udpConfig(s.UDPFlows),
		LB: client.LBConfig{Policy: s.LBPolicy, Retry: s.LBRetry, RetryMax: s.LBRetryMax}}
	var sock io.Closer
	var err error
	if cfg.Kind, err = sourceKind(s); err != nil {
		return fmt.Errorf("source %q: %w", name, err)
	}
	// A udp source's socket from systemd is a datagram socket of the same
	// name (ListenDatagram= in the socket unit).
	if s.Proto == wire.ProtoUDP {
		cfg.PacketConn, err = r.d.lst.udp(fdSource(name), s.Addr)
		sock = cfg.PacketConn
		if err == nil {
			// One socket takes every flow's datagrams: a burst from many
			// clients at once overflows the default buffer.
			tuneUDP(cfg.PacketConn, r.d.tune, r.d.log)
		}
	} else {
		cfg.Listener, err = r.d.lst.tcp(fdSource(name), s.Addr)
		sock = cfg.Listener
	}
	if err != nil {
		return fmt.Errorf("source %q: %w", name, err)
	}
	if err := r.c.AddSource(name, cfg); err != nil {
		sock.Close()
		return err
	}
	return nil
}

func (r *clientRole) addDestination(name string, d config.Destination) error {
	kind, err := destinationKind(d)
	if err != nil {
		return fmt.Errorf("destination %q: %w", name, err)
	}
	cfg := client.DestinationConfig{
		Addr: d.Addr, Route: d.Route, ProxyProto: d.ProxyProtoVersion, FileServerRoot: d.FileServerRoot,
		Proto: d.Proto, UDP: udpConfig(d.UDPFlows), Kind: kind,
	}
	onDemand(d, &cfg)
	return r.c.AddDestination(name, cfg)
}

func udpConfig(u config.UDPFlows) client.UDPConfig {
	return client.UDPConfig{IdleTimeout: u.UDPIdle, MaxFlows: u.UDPMaxFlows}
}

func (r *clientRole) name() string                    { return "client" }
func (r *clientRole) statusAddr() string              { return r.cfg.StatusAddr }
func (r *clientRole) metricsAddr() string             { return r.cfg.MetricsAddr }
func (r *clientRole) changes() []<-chan struct{}      { return []<-chan struct{}{r.c.Changed()} }
func (r *clientRole) ready() <-chan struct{}          { return r.c.Registered() }
func (r *clientRole) serve(ctx context.Context) error { return r.c.Run(ctx) }
func (r *clientRole) close()                          { closeAll(r.direct, r.relay) }

func (r *clientRole) summary() string { return r.snapshot().Summary }

func (r *clientRole) snapshot() Snapshot {
	st := r.c.Status()
	return Snapshot{Client: &st, Summary: st.Summary()}
}

// alive takes the client's main lock (Running): O(1), where a status would
// measure every connection.
func (r *clientRole) alive() { r.c.Running() }

// apply removes, adds and replaces endpoints so the client matches n;
// endpoints whose settings are unchanged are not touched, so their flows go
// on. r.cfg follows every step, so after a failure it still says what runs
// and applying the previous configuration puts things back.
func (r *clientRole) apply(f *config.File) ([]string, error) {
	n := f.Client
	cur := *r.cfg
	cur.Sources, cur.Destinations = maps.Clone(r.cfg.Sources), maps.Clone(r.cfg.Destinations)
	if cur.Sources == nil {
		cur.Sources = map[string]config.Source{}
	}
	if cur.Destinations == nil {
		cur.Destinations = map[string]config.Destination{}
	}
	defer func() { r.cfg = &cur }()
	for _, name := range slices.Sorted(maps.Keys(cur.Sources)) {
		if ns, ok := n.Sources[name]; !ok || ns != cur.Sources[name] {
			if err := r.c.RemoveSource(name); err != nil {
				return nil, err
			}
			delete(cur.Sources, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cur.Destinations)) {
		if nd, ok := n.Destinations[name]; !ok || nd != cur.Destinations[name] {
			if err := r.c.RemoveDestination(name); err != nil {
				return nil, err
			}
			delete(cur.Destinations, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(n.Destinations)) {
		if _, ok := cur.Destinations[name]; !ok {
			if err := r.addDestination(name, n.Destinations[name]); err != nil {
				return nil, err
			}
			cur.Destinations[name] = n.Destinations[name]
		}
	}
	for _, name := range slices.Sorted(maps.Keys(n.Sources)) {
		if _, ok := cur.Sources[name]; !ok {
			if err := r.addSource(name, n.Sources[name]); err != nil {
				return nil, err
			}
			cur.Sources[name] = n.Sources[name]
		}
	}
	notes := changed(map[string][2]string{
		"client.token": {cur.TokenValue, n.TokenValue}, "client.server-addr": {cur.ServerAddr, n.ServerAddr},
		"client.server-cas": {cur.ServerCAs, n.ServerCAs}, "client.direct-addr": {cur.DirectAddr, n.DirectAddr},
		"client.status-addr": {cur.StatusAddr, n.StatusAddr}, "client.metrics-addr": {cur.MetricsAddr, n.MetricsAddr}, "client.port-mapping": {cur.PortMapping, n.PortMapping},
		"client.server-name": {cur.ServerName, n.ServerName}, "client.direct-stateless-reset-key": {resetKeyText(cur.DirectResetKey), resetKeyText(n.DirectResetKey)},
	})
	return notes, nil
}
