package relay

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// authTable is an immutable snapshot of the authorization table, swapped
// atomically so the forwarding path reads it without locks.
type authTable struct {
	known     map[identity.ID]bool
	pairs     map[pairKey]*atomic.Int64 // bytes forwarded from→to
	endpoints []wire.RelayEndpoint      // sorted by name
}

// SetAuth installs a whole authorization table, as a batch from control
// that starts with a reset does.
func (s *Server) SetAuth(a *wire.RelayAuth) {
	b := &authBatch{entries: map[string]wire.RelayEndpoint{}}
	b.apply(&wire.RelayAuthDelta{Reset: true, Set: a.Endpoints})
	s.commit(b)
}

// authBatch is a batch of relay_auth_delta being received: the table it
// builds is not in force before the batch's last message, so that a table
// split over several messages never applies in part.
type authBatch struct {
	entries map[string]wire.RelayEndpoint
}

// beginBatch starts a batch from the table in force.
func (s *Server) beginBatch() *authBatch {
	b := &authBatch{entries: map[string]wire.RelayEndpoint{}}
	for _, ep := range s.auth.Load().endpoints {
		b.entries[ep.Endpoint] = ep
	}
	return b
}

// apply adds one message to the batch, in the order its fields say.
func (b *authBatch) apply(d *wire.RelayAuthDelta) {
	if d.Reset {
		clear(b.entries)
	}
	for _, name := range d.Remove {
		delete(b.entries, name)
	}
	for _, ep := range d.Set {
		b.entries[ep.Endpoint] = ep
	}
	for _, ep := range d.Extend {
		e := b.entries[ep.Endpoint]
		e.Endpoint = ep.Endpoint
		// Clipped, so that appending never writes into the arrays of a
		// table in force.
		e.Sources = append(slices.Clip(e.Sources), ep.Sources...)
		e.Destinations = append(slices.Clip(e.Destinations), ep.Destinations...)
		b.entries[ep.Endpoint] = e
	}
}

// commit puts the batch's table in force: one new snapshot per batch,
// however many messages and entries it had.
func (s *Server) commit(b *authBatch) {
	endpoints := slices.SortedFunc(maps.Values(b.entries), func(x, y wire.RelayEndpoint) int {
		return strings.Compare(x.Endpoint, y.Endpoint)
	})
	t := &authTable{known: map[identity.ID]bool{}, pairs: map[pairKey]*atomic.Int64{}, endpoints: endpoints}
	s.mu.Lock()
	defer s.mu.Unlock()
	counter := func(k pairKey) *atomic.Int64 {
		c := s.counters[k]
		if c == nil {
			c = new(atomic.Int64)
			s.counters[k] = c
		}
		return c
	}
	for _, ep := range endpoints {
		for _, src := range ep.Sources {
			t.known[src] = true
			for _, dst := range ep.Destinations {
				t.known[dst] = true
				t.pairs[keyOf(src, dst)] = counter(keyOf(src, dst))
				t.pairs[keyOf(dst, src)] = counter(keyOf(dst, src))
			}
		}
	}
	for k := range s.counters {
		if t.pairs[k] == nil {
			delete(s.counters, k)
		}
	}
	s.auth.Store(t)
	s.changed.Notify()
	s.log.Debug("relay authorization updated", "endpoints", len(endpoints))
}

// errNoReset ends a link whose first table update builds on a table from
// before the link: the relay could not tell which of its entries control
// still means.
var errNoReset = errors.New("control's first table update on the link is not a reset")

// readControl applies the batches control sends on one link. The table
// in force stays until the first batch of the link (a reset) is complete,
// so relayed flows go on while control reconnects; a batch the link's end
// cuts short is dropped.
func (s *Server) readControl(r io.Reader) error {
	var batch *authBatch
	for first := true; ; first = false {
		m, err := wire.Read(r, wire.ControlToRelay)
		if err != nil {
			return err
		}
		d, ok := m.(*wire.RelayAuthDelta)
		if !ok {
			return fmt.Errorf("unexpected %s from control", wire.Kind(m))
		}
		if first && !d.Reset {
			return errNoReset
		}
		if batch == nil && d.Reset {
			batch = &authBatch{entries: map[string]wire.RelayEndpoint{}}
		} else if batch == nil {
			batch = s.beginBatch()
		}
		batch.apply(d)
		if !d.More {
			s.commit(batch)
			batch = nil
		}
	}
}
