package control

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/etcdkv"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// watch keeps the remote sessions in step with the store: a full read,
// then the changes from there on. The watch resumes by itself after an
// error (etcd lost its quorum, a member went away) from the last revision
// it delivered; only when it ends (the history it would resume from was
// compacted) does this read everything again. Meanwhile the remote
// sessions stay as they were.
func (c *cluster) watch(ctx context.Context) {
	for ctx.Err() == nil {
		kvs, rev, err := c.kv.Get(ctx, c.cfg.Prefix, true)
		if err != nil {
			if ctx.Err() == nil {
				c.setState(fmt.Errorf("read cluster state: %w", err))
				backoff.Wait(ctx, retryWait)
			}
			continue
		}
		c.setState(nil)
		c.resync(kvs)
		// Ranging to the end also waits for the watch's goroutine.
		for resp := range c.kv.Watch(ctx, c.cfg.Prefix, rev+1) {
			if resp.Err != nil {
				if ctx.Err() == nil {
					c.setState(fmt.Errorf("watch cluster state: %w", resp.Err))
				}
				continue
			}
			for _, ev := range resp.Events {
				c.apply(ev.Type == "DELETE", ev.KV)
			}
		}
		if ctx.Err() == nil {
			c.log.Info("cluster watch ended (its history was compacted): reading the whole state again")
		}
	}
}

// resync applies a full read: every record in it, and the removal of
// remote sessions that are no longer there.
func (c *cluster) resync(kvs []etcdkv.KV) {
	present := map[string]bool{}
	nodes := map[string]bool{}
	for _, kv := range kvs {
		present[kv.Key] = true
		if n, ok := strings.CutPrefix(kv.Key, c.key(keyNodes)); ok {
			nodes[n] = true
		}
	}
	c.mu.Lock()
	c.nodes = nodes
	c.mu.Unlock()
	clients, relays := c.s.reg.remoteIDs()
	for _, id := range clients {
		if !present[c.key(keyClients, idKey(id))] {
			c.s.reg.removeRemoteClient(id)
		}
	}
	for _, id := range relays {
		if !present[c.key(keyRelays, idKey(id))] {
			c.s.reg.removeRemoteRelay(id)
		}
	}
	for _, kv := range kvs {
		c.apply(false, kv)
	}
}

// apply takes one record (or its deletion) into the registry.
func (c *cluster) apply(deleted bool, kv etcdkv.KV) {
	rest, ok := strings.CutPrefix(kv.Key, c.cfg.Prefix)
	if !ok {
		return
	}
	switch {
	case strings.HasPrefix(rest, keyClients):
		c.applyClient(strings.TrimPrefix(rest, keyClients), deleted, kv)
	case strings.HasPrefix(rest, keyRelays):
		c.applyRelay(strings.TrimPrefix(rest, keyRelays), deleted, kv)
	case strings.HasPrefix(rest, keyMail+c.cfg.Node+"/"):
		if !deleted {
			c.deliver(kv)
		}
	case strings.HasPrefix(rest, keyNodes):
		n := strings.TrimPrefix(rest, keyNodes)
		c.mu.Lock()
		if deleted {
			delete(c.nodes, n)
		} else {
			c.nodes[n] = true
		}
		c.mu.Unlock()
		c.s.reg.changed.Notify()
	case rest == keyTokens:
		var o TokenOverlay
		if !deleted && json.Unmarshal(kv.Value, &o) != nil {
			c.log.Warn("cluster token overlay unreadable: ignored", "key", kv.Key)
			return
		}
		if c.cfg.Tokens != nil {
			c.cfg.Tokens(o)
		}
	}
}

func (c *cluster) applyClient(idHex string, deleted bool, kv etcdkv.KV) {
	id, ok := parseID(idHex)
	if !ok {
		return
	}
	if deleted {
		c.s.reg.removeRemoteClient(id)
		return
	}
	var rec clientRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil || len(rec.Cert) == 0 || identity.IDOf(rec.Cert) != id {
		c.log.Warn("cluster client record unreadable or not matching its key: ignored", "key", kv.Key)
		return
	}
	if rec.Node == c.cfg.Node {
		return // our own, or our previous run's: its lease decides
	}
	c.mu.Lock()
	mine, published := c.putRev[kv.Key]
	c.mu.Unlock()
	if local := c.s.reg.client(id); local != nil && published && kv.ModRevision > mine {
		// Registered elsewhere after it registered here: the client has
		// reconnected to another node, and this session is a leftover
		// that has not noticed yet.
		c.log.Info("client moved to another control node: closing its session here", "client", id.Short(), "to_node", rec.Node)
		local.close()
	}
	c.s.reg.upsertRemoteClient(id, &rec, &remoteInfo{node: rec.Node, post: c.post})
}

func (c *cluster) applyRelay(idHex string, deleted bool, kv etcdkv.KV) {
	id, ok := parseID(idHex)
	if !ok {
		return
	}
	if deleted {
		c.s.reg.removeRemoteRelay(id)
		return
	}
	var rec relayRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil || len(rec.Cert) == 0 || identity.IDOf(rec.Cert) != id {
		c.log.Warn("cluster relay record unreadable or not matching its key: ignored", "key", kv.Key)
		return
	}
	if rec.Node == c.cfg.Node {
		return
	}
	c.s.reg.upsertRemoteRelay(id, &rec, &remoteInfo{node: rec.Node, post: c.post})
}

// deliver hands one mail record to its client here (or a punch_ready to
// the punch it belongs to) and has it deleted. The deletion is left to the
// mail sender: a round trip to etcd here would hold up every event behind
// it. A full queue leaves the record to the sender's lease.
func (c *cluster) deliver(kv etcdkv.KV) {
	select {
	case c.trash <- kv.Key:
	default:
	}
	var m mailRecord
	if err := json.Unmarshal(kv.Value, &m); err != nil {
		return
	}
	switch m.Kind {
	case mailClient:
		id, ok := parseID(m.To)
		if !ok {
			return
		}
		msg, err := wire.Read(bytes.NewReader(m.Msg), wire.ControlToClient)
		if err != nil {
			return
		}
		if p, ok := msg.(*wire.Punch); ok {
			c.mu.Lock()
			now := time.Now()
			for k, f := range c.forwards {
				if now.After(f.expires) {
					delete(c.forwards, k)
				}
			}
			c.forwards[hex.EncodeToString(p.Nonce)] = forward{node: m.From, expires: now.Add(forwardTTL)}
			c.mu.Unlock()
		}
		if s := c.s.reg.client(id); s != nil {
			s.send(msg)
		}
	case mailReady:
		id, ok := parseID(m.Peer)
		if !ok {
			return
		}
		if s := c.s.reg.remoteClient(id); s != nil {
			c.s.punchReady(s, m.Nonce)
		}
	}
}

// forwardReady sends a local client's punch_ready to the node that holds
// the punch, if a punch with that nonce came from another node.
func (c *cluster) forwardReady(from *session, nonce []byte) bool {
	c.mu.Lock()
	f, ok := c.forwards[hex.EncodeToString(nonce)]
	c.mu.Unlock()
	if !ok || time.Now().After(f.expires) {
		return false
	}
	c.enqueue(mailRecord{Node: f.node, Kind: mailReady, From: c.cfg.Node, Peer: idKey(from.id), Nonce: nonce})
	return true
}

// UpdateTokens changes the cluster's token overlay with f, atomically
// against concurrent changes on other nodes. The change reaches every node
// (this one included) through its watch.
func (s *Server) UpdateTokens(ctx context.Context, f func(*TokenOverlay) error) error {
	c := s.cluster.Load()
	if c == nil {
		return errors.New("not in a cluster")
	}
	key := c.key(keyTokens)
	for {
		kvs, _, err := c.kv.Get(ctx, key, false)
		if err != nil {
			return fmt.Errorf("read cluster tokens (etcd unavailable: tokens cannot change now): %w", err)
		}
		var o TokenOverlay
		cmp := etcdkv.Compare{Key: key, Target: "create", Result: "=", Rev: 0}
		if len(kvs) == 1 {
			if err := json.Unmarshal(kvs[0].Value, &o); err != nil {
				return fmt.Errorf("cluster tokens unreadable: %w", err)
			}
			cmp = etcdkv.Compare{Key: key, Target: "mod", Result: "=", Rev: kvs[0].ModRevision}
		}
		if err := f(&o); err != nil {
			return err
		}
		b, err := json.Marshal(o)
		if err != nil {
			return err
		}
		ok, _, err := c.kv.Txn(ctx, []etcdkv.Compare{cmp}, []etcdkv.Op{{Put: true, Key: key, Value: b}}, nil)
		if err != nil {
			return fmt.Errorf("write cluster tokens: %w", err)
		}
		if ok {
			return nil
		}
		// Another node changed them meanwhile: apply f to theirs.
	}
}

// ClusterTokens reads the cluster's token overlay.
func (s *Server) ClusterTokens(ctx context.Context) (TokenOverlay, error) {
	var o TokenOverlay
	c := s.cluster.Load()
	if c == nil {
		return o, errors.New("not in a cluster")
	}
	kvs, _, err := c.kv.Get(ctx, c.key(keyTokens), false)
	if err != nil {
		return o, fmt.Errorf("read cluster tokens: %w", err)
	}
	if len(kvs) == 1 {
		if err := json.Unmarshal(kvs[0].Value, &o); err != nil {
			return o, fmt.Errorf("cluster tokens unreadable: %w", err)
		}
	}
	return o, nil
}

func sortNodes(n []ClusterNode) { sort.Slice(n, func(i, j int) bool { return n[i].Name < n[j].Name }) }
