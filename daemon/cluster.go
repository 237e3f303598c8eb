package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/etcdkv"
)

// clusterJoin is a control role's place in a cluster of control nodes
// sharing their state in etcd (store = "etcd", docs/ha.md); nil for the
// default local store.
type clusterJoin struct {
	kv  *etcdkv.Client
	cfg control.ClusterConfig
}

// joinCluster prepares the etcd client of cs; nothing is dialed yet.
func (d *Daemon) joinCluster(cs config.ClusterStore, node string) (*clusterJoin, error) {
	if cs.Store != config.StoreEtcd {
		return nil, nil
	}
	tlsConf, err := etcdTLS(cs)
	if err != nil {
		return nil, err
	}
	kv, err := etcdkv.New(etcdkv.Config{Endpoints: cs.EtcdEndpoints, TLS: tlsConf})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	if node == "" {
		if node, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("node name: no node-name set and no hostname: %w", err)
		}
	}
	return &clusterJoin{kv: kv, cfg: control.ClusterConfig{KV: kv, Prefix: cs.EtcdPrefix, Node: node, Tokens: d.applySharedTokens}}, nil
}

func etcdTLS(cs config.ClusterStore) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cs.EtcdCAsFile != "" {
		pem, err := os.ReadFile(cs.EtcdCAsFile)
		if err != nil {
			return nil, fmt.Errorf("etcd-cas-file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd-cas-file %s: no PEM certificate in it", cs.EtcdCAsFile)
		}
	}
	if cs.EtcdCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cs.EtcdCertFile, cs.EtcdKeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd-cert-file/etcd-key-file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// run keeps ctrl in the cluster until ctx ends.
func (j *clusterJoin) run(ctx context.Context, ctrl *control.Server) error {
	if j == nil {
		return nil
	}
	defer j.kv.Close()
	return ctrl.RunCluster(ctx, j.cfg)
}

// applySharedTokens lays the cluster's token changes over the
// configuration, as the local overlay's would be: a token added or revoked
// on any node applies here within the watch's delay, and a revoked token's
// clients here are disconnected (SetAuth). The local store keeps a copy,
// so a restart while etcd is away starts with the last known tokens.
func (d *Daemon) applySharedTokens(o control.TokenOverlay) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.changed.Notify()
	next := d.overlay.clone()
	next.Tokens, next.Revoked = o.Tokens, o.Revoked
	if _, err := d.role.apply(effective(d.file, next)); err != nil {
		d.log.Error("cluster token change not applied", "err", err)
		_, _ = d.role.apply(effective(d.file, d.overlay))
		return
	}
	if err := next.save(d.store); err != nil {
		d.log.Warn("cluster token change applied but not kept in the local store", "err", err)
	}
	d.overlay = next
	d.log.Info("client tokens changed by the cluster", "added", len(o.Tokens), "revoked", len(o.Revoked))
}

// tokenSharer is a role whose tokens live in a cluster store.
type tokenSharer interface {
	UpdateTokens(ctx context.Context, f func(*control.TokenOverlay) error) error
}

// sharedTokens is the role's cluster when its tokens are shared, else nil.
func (d *Daemon) sharedTokens() tokenSharer {
	switch r := d.role.(type) {
	case *serverRole:
		if r.cluster != nil {
			return r.ctrl
		}
	case *controlRole:
		if r.cluster != nil {
			return r.ctrl
		}
	}
	return nil
}

// editTokens changes a token overlay: the one in the cluster store when
// the role shares its tokens (the change reaches this node through its
// watch like any other's), else the local one.
func (d *Daemon) editTokens(edit func(fileTokens []string, added, revoked *[]string) error) error {
	if sh := d.sharedTokens(); sh != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.mu.Lock()
		fileTokens := slices.Clone(d.clientTokens(d.file))
		d.mu.Unlock()
		return sh.UpdateTokens(ctx, func(o *control.TokenOverlay) error { return edit(fileTokens, &o.Tokens, &o.Revoked) })
	}
	return d.change(func(o *overlay) error { return edit(d.clientTokens(d.file), &o.Tokens, &o.Revoked) })
}
