package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/etcdkv"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// publish writes this node's changed sessions to the store whenever the
// registry marks some. What piles up while a write is on its way goes in
// the next one, so a burst of registrations costs a few transactions, not
// one each.
func (c *cluster) publish(ctx context.Context) {
	held := time.NewTimer(time.Hour)
	held.Stop()
	defer held.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-held.C:
		}
		lease := etcdkv.LeaseID(c.lease.Load())
		if lease == 0 {
			continue // keepLease kicks again once it has one
		}
		c.mu.Lock()
		dirty := c.dirty
		c.dirty = map[identity.ID]bool{}
		c.mu.Unlock()
		if wait := c.hold(dirty); wait > 0 {
			held.Reset(wait)
		}
		if len(dirty) == 0 {
			continue
		}
		if err := c.write(ctx, lease, dirty); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.setState(err)
			c.mu.Lock()
			for id, relay := range dirty {
				if _, again := c.dirty[id]; !again {
					c.dirty[id] = relay
				}
			}
			c.mu.Unlock()
			if !backoff.Wait(ctx, retryWait) {
				return
			}
			c.poke()
			continue
		}
		c.setState(nil)
	}
}

// hold takes out of dirty the clients that moved here and are still
// announcing (registry.settled), puts them back for later, and returns
// when the first of them is due (0: none held).
func (c *cluster) hold(dirty map[identity.ID]bool) time.Duration {
	var first time.Duration
	for id, relay := range dirty {
		if relay {
			continue
		}
		if ok, wait := c.s.reg.settled(id); !ok {
			delete(dirty, id)
			c.mu.Lock()
			c.dirty[id] = false
			c.mu.Unlock()
			if first == 0 || wait < first {
				first = wait
			}
		}
	}
	return first
}

type pendingPut struct {
	key string
	val []byte
}

// write puts the records of the sessions in dirty that are still ours and
// deletes those that ended: a delete only if the record is still the one
// we wrote, since the client may have moved to another node meanwhile.
func (c *cluster) write(ctx context.Context, lease etcdkv.LeaseID, dirty map[identity.ID]bool) error {
	var puts []pendingPut
	var gone []string
	for id, relay := range dirty {
		var key string
		var rec any
		if relay {
			key = c.key(keyRelays, idKey(id))
			if r := c.s.reg.relayRecordOf(id, c.cfg.Node); r != nil {
				rec = r
			}
		} else {
			key = c.key(keyClients, idKey(id))
			if r := c.s.reg.clientRecordOf(id, c.cfg.Node); r != nil {
				sort.Slice(r.Endpoints, func(i, j int) bool {
					a, b := r.Endpoints[i], r.Endpoints[j]
					return a.Name < b.Name || a.Name == b.Name && a.Role < b.Role
				})
				rec = r
			}
		}
		if rec == nil {
			gone = append(gone, key)
			continue
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode %s: %w", key, err)
		}
		puts = append(puts, pendingPut{key, b})
	}
	for len(puts) > 0 {
		n := min(len(puts), txnOps)
		ops := make([]etcdkv.Op, n)
		for i, p := range puts[:n] {
			ops[i] = etcdkv.Op{Put: true, Key: p.key, Value: p.val, Lease: lease}
		}
		_, rev, err := c.kv.Txn(ctx, nil, ops, nil)
		if err != nil {
			return fmt.Errorf("publish %d records: %w", n, err)
		}
		c.mu.Lock()
		for _, p := range puts[:n] {
			c.putRev[p.key] = rev
		}
		c.mu.Unlock()
		puts = puts[n:]
	}
	for _, key := range gone {
		c.mu.Lock()
		rev, ok := c.putRev[key]
		delete(c.putRev, key)
		c.mu.Unlock()
		if !ok {
			continue // never published, or under a lease that is gone
		}
		cmp := []etcdkv.Compare{{Key: key, Target: "mod", Result: "=", Rev: rev}}
		if _, _, err := c.kv.Txn(ctx, cmp, []etcdkv.Op{{Key: key}}, nil); err != nil {
			c.mu.Lock()
			c.putRev[key] = rev
			c.mu.Unlock()
			return fmt.Errorf("withdraw %s: %w", key, err)
		}
	}
	return nil
}

// post is session.send for a client of another node: the message goes by
// mail. A full queue drops it, as a full send queue ends a local session:
// punches are retried by their clients.
func (c *cluster) post(to *session, m wire.Message) {
	var buf bytes.Buffer
	if err := wire.Write(&buf, m); err != nil {
		return
	}
	c.enqueue(mailRecord{Node: to.remote.node, Kind: mailClient, From: c.cfg.Node, To: idKey(to.id), Msg: buf.Bytes()})
}

func (c *cluster) enqueue(m mailRecord) {
	select {
	case c.mail <- m:
	default:
		c.log.Debug("cluster mail queue full: message dropped", "to_node", m.Node, "kind", m.Kind)
	}
}

// sendMail writes queued mail, under the node's lease so that mail nobody
// reads (its node died) goes with the lease, and deletes the mail this node
// has delivered.
func (c *cluster) sendMail(ctx context.Context) {
	for {
		var batch []mailRecord
		var trash []string
		select {
		case <-ctx.Done():
			return
		case m := <-c.mail:
			batch = append(batch, m)
		case k := <-c.trash:
			trash = append(trash, k)
		}
	more:
		for len(batch)+len(trash) < txnOps {
			select {
			case m := <-c.mail:
				batch = append(batch, m)
			case k := <-c.trash:
				trash = append(trash, k)
			default:
				break more
			}
		}
		ops := make([]etcdkv.Op, 0, len(batch)+len(trash))
		seen := map[string]bool{}
		for _, k := range trash {
			if !seen[k] { // etcd refuses a transaction that names a key twice
				seen[k] = true
				ops = append(ops, etcdkv.Op{Key: k})
			}
		}
		// Without a lease, mail would outlive its punch: it waits for none.
		if lease := etcdkv.LeaseID(c.lease.Load()); lease != 0 {
			for _, m := range batch {
				b, err := json.Marshal(m)
				if err != nil {
					continue
				}
				seq := strconv.FormatUint(c.mailSq.Add(1), 10)
				ops = append(ops, etcdkv.Op{Put: true, Key: c.key(keyMail, m.Node, "/", c.cfg.Node, "-", seq), Value: b, Lease: lease})
			}
		}
		if len(ops) == 0 {
			continue
		}
		if _, _, err := c.kv.Txn(ctx, nil, ops, nil); err != nil && ctx.Err() == nil {
			// Mail is for punches in progress: by the time the store is
			// back they have timed out, and their clients ask again.
			c.log.Debug("cluster mail not sent", "ops", len(ops), "err", err)
		}
	}
}
