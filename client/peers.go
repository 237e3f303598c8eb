package client

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// The client's index of peers: which peer serves which endpoint of ours.

// peerLocked returns the peer of id, creating and starting it if needed.
func (c *Client) peerLocked(id identity.ID) *peer {
	p := c.peers[id]
	if p == nil {
		p = newPeer(c, id)
		c.peers[id] = p
		p.start()
	}
	return p
}

// updatePeers applies control's current list of counterparts of one of our
// endpoints.
func (c *Client) updatePeers(m *wire.Peers) {
	c.mu.Lock()
	if c.runCtx == nil {
		c.mu.Unlock()
		return
	}
	// Peers of an endpoint come only once control holds it: a refusal
	// retried with success ends here.
	if s := c.sources[m.Endpoint]; s != nil && m.Role == "source" {
		s.refused = ""
	}
	if d := c.destinations[m.Endpoint]; d != nil && m.Role == "destination" {
		d.refused = ""
	}
	listed := map[identity.ID]bool{}
	var mismatched []string
	for _, wp := range m.Peers {
		if wp.ID != identity.IDOf(wp.Cert) {
			c.log.Warn("control sent a peer whose id does not match its certificate", "peer", wp.ID.Short())
			continue
		}
		var ours, proto string
		switch m.Role {
		case "source":
			s := c.sources[m.Endpoint]
			if s == nil {
				continue // removed meanwhile
			}
			ours, proto = s.route, s.proto
		default:
			d := c.destinations[m.Endpoint]
			if d == nil {
				continue
			}
			ours, proto = d.route, d.proto
		}
		if theirs := wire.ProtoOf(wp.Proto); theirs != proto {
			mismatched = append(mismatched, wp.ID.Short())
			continue // a flow of one protocol cannot go to the other
		}
		listed[wp.ID] = true
		p := c.peerLocked(wp.ID)
		p.update(wp.Direct, wp.NAT)
		if p.setRole(m.Role, m.Endpoint, routes{ours: ours, theirs: wp.Route}, true) && m.Role == "source" {
			checkRoutes(c.log, m.Endpoint, ours, wp)
			p.named()
		}
		p.poke()
	}
	for id, p := range c.peers {
		if !listed[id] {
			p.setRole(m.Role, m.Endpoint, routes{}, false)
		}
	}
	c.noteMismatchLocked(m.Role, m.Endpoint, mismatched)
	c.mu.Unlock()
	select { // the retirer looks for peers no endpoint uses any more
	case c.peersDirty <- struct{}{}:
	default:
	}
	c.changed.Notify()
}

// dropEndpointLocked forgets endpoint name of role for every peer, when
// the endpoint is removed.
func (c *Client) dropEndpointLocked(role, name string) {
	for _, p := range c.peers {
		p.setRole(role, name, routes{}, false)
		p.poke()
	}
	select {
	case c.peersDirty <- struct{}{}:
	default:
	}
}

// noteMismatchLocked records (and logs, when it changes) that peers of
// our endpoint carry the other protocol: a udp source with only tcp
// destinations of its name would otherwise wait in silence.
func (c *Client) noteMismatchLocked(role, name string, peers []string) {
	var proto string
	var note *string
	switch s, d := c.sources[name], c.destinations[name]; {
	case role == "source" && s != nil:
		proto, note = s.proto, &s.mismatch
	case role != "source" && d != nil:
		proto, note = d.proto, &d.mismatch
	default:
		return
	}
	msg := ""
	if len(peers) > 0 {
		other := wire.ProtoUDP
		if proto == wire.ProtoUDP {
			other = wire.ProtoTCP
		}
		msg = fmt.Sprintf("not used: %s of this name carrying %s, not %s (%s)",
			plural(len(peers), "peer"), other, proto, strings.Join(peers, ", "))
	}
	if msg != *note && msg != "" {
		c.log.Error("protocol mismatch: peers of this endpoint carry the other protocol", "endpoint", name, "role", role,
			"proto", proto, "peers", strings.Join(peers, ","))
	}
	*note = msg
}

// checkRoutes logs a source/destination pair whose routes share no path.
func checkRoutes(log *slog.Logger, name, ours string, wp wire.Peer) {
	if (allows(ours, pathDirect) && allows(wp.Route, pathDirect)) || (allows(ours, pathRelay) && allows(wp.Route, pathRelay)) {
		return
	}
	log.Error("source and destination routes are incompatible: no connection will be made",
		"endpoint", name, "source_route", ours, "destination_route", wp.Route, "peer", wp.ID.Short())
}

// retirePeers closes peers that control has not named for unusedGrace,
// until ctx ends.
func (c *Client) retirePeers(ctx context.Context) {
	unusedSince := map[identity.ID]time.Time{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		next := now.Add(time.Hour)
		var retire []*peer
		c.mu.Lock()
		for id, p := range c.peers {
			if !p.unused() {
				delete(unusedSince, id)
				continue
			}
			since, ok := unusedSince[id]
			if !ok {
				since = now
				unusedSince[id] = now
			}
			if at := since.Add(unusedGrace); now.Before(at) {
				next = minTime(next, at)
				continue
			}
			delete(c.peers, id)
			delete(unusedSince, id)
			retire = append(retire, p)
		}
		c.mu.Unlock()
		for _, p := range retire {
			p.close("peer no longer authorized")
			c.trav.Forget(p.id)
		}
		if len(retire) > 0 {
			c.changed.Notify()
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-c.peersDirty:
		case <-timer.C:
		}
	}
}

// wakePeers makes every peer look at its paths again (a relay came up, our
// NAT behaviour is known) and tells status watchers.
// relayLinkUp lets every peer dial through relays at once: a relayed
// path that failed while no relay was reachable (one restarting) must not
// wait out its backoff now that one is.
func (c *Client) relayLinkUp() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.peers {
		p.mu.Lock()
		p.relayBackoff.Reset()
		p.nextRelay = time.Time{}
		p.mu.Unlock()
	}
}

func (c *Client) wakePeers() {
	c.mu.Lock()
	for _, p := range c.peers {
		p.poke()
	}
	c.mu.Unlock()
	c.changed.Notify()
}

// networkChanged moves everything to a new network: a new control session
// (control then observes the new public address), new relay links, and
// direct paths punched again.
func (c *Client) networkChanged(lost bool) {
	c.ctl.drop("network changed")
	c.relays.drop("network changed")
	c.mu.Lock()
	peers := make([]*peer, 0, len(c.peers))
	for _, p := range c.peers {
		peers = append(peers, p)
	}
	c.mu.Unlock()
	for _, p := range peers {
		p.networkChanged(lost)
	}
	c.changed.Notify()
}
