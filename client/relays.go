package client

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// relayLinks are the client's own connections to the relays control names.
// Relayed peer connections go through relays whose link is up.
type relayLinks struct {
	c *Client

	mu    sync.Mutex
	links map[identity.ID]*relayLink
}

// relayLink is the connection to one relay.
type relayLink struct {
	info   wire.Relay
	addr   netip.AddrPort
	cancel context.CancelFunc
	conn   *quic.Conn // guarded by relayLinks.mu; nil while down
}

// update applies control's list of relays: links to relays no longer
// named end, links to new ones start.
func (r *relayLinks) update(m *wire.Relays) {
	resolved := map[identity.ID]netip.AddrPort{}
	want := map[identity.ID]wire.Relay{}
	for _, rl := range m.Relays {
		ua, err := net.ResolveUDPAddr("udp", rl.Addr)
		if err != nil {
			r.c.log.Warn("cannot resolve relay address", "relay", rl.ID.Short(), "addr", rl.Addr, "err", err)
			continue
		}
		ap := ua.AddrPort()
		resolved[rl.ID] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		want[rl.ID] = rl
	}
	r.mu.Lock()
	for id, l := range r.links {
		if w, ok := want[id]; !ok || w.Addr != l.info.Addr || string(w.Cert) != string(l.info.Cert) {
			l.cancel()
			delete(r.links, id)
		}
	}
	addrs := make([]netip.AddrPort, 0, len(want))
	var start []*relayLink
	for id, rl := range want {
		addrs = append(addrs, resolved[id])
		if r.links[id] == nil {
			l := &relayLink{info: rl, addr: resolved[id], cancel: func() {}}
			r.links[id] = l
			start = append(start, l)
		}
	}
	r.mu.Unlock()
	r.c.relayNet.SetRelays(addrs)
	r.c.trav.SetRelays(addrs)
	r.c.mu.Lock()
	for _, l := range start {
		r.c.spawnLocked(func(ctx context.Context) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			r.mu.Lock()
			if r.links[l.info.ID] != l { // replaced before it started
				r.mu.Unlock()
				return
			}
			l.cancel = cancel
			r.mu.Unlock()
			r.run(ctx, l)
		})
	}
	r.c.mu.Unlock()
	r.c.changed.Notify()
}

func (r *relayLinks) run(ctx context.Context, l *relayLink) {
	c := r.c
	log := c.log.With("relay", l.info.ID.Short(), "addr", l.info.Addr)
	bo := backoff.New(100*time.Millisecond, 2*time.Second)
	for ctx.Err() == nil {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		tlsConf := c.id.ClientTLS(wire.ALPNClientRelay, func(id identity.ID) bool { return id == l.info.ID })
		conn, err := c.relayTr.Dial(dctx, net.UDPAddrFromAddrPort(l.addr), tlsConf, quicconf.Control())
		var observed string
		if err == nil {
			if observed, err = relayWelcome(dctx, conn); err != nil {
				_ = conn.CloseWithError(wire.ConnNormal, "")
			}
		}
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				log.Debug("relay connect failed", "err", err)
			}
			if !bo.Sleep(ctx) {
				return
			}
			continue
		}
		bo.Reset()
		log.Info("connected to relay", "observed", observed)
		r.setConn(l, conn)
		select {
		case <-ctx.Done():
			_ = conn.CloseWithError(wire.ConnNormal, "relay no longer used")
		case <-conn.Context().Done():
			log.Warn("lost relay", msgid.RelayLost.Attr(), "err", context.Cause(conn.Context()))
		}
		r.setConn(l, nil)
	}
}

func (r *relayLinks) setConn(l *relayLink, conn *quic.Conn) {
	r.mu.Lock()
	l.conn = conn
	r.mu.Unlock()
	if conn != nil {
		r.c.relayLinkUp()
	}
	r.c.wakePeers()
}

// live lists the relays whose link is up.
func (r *relayLinks) live() []netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []netip.AddrPort
	for _, l := range r.links {
		if l.conn != nil {
			out = append(out, l.addr)
		}
	}
	return out
}

// drop closes every link's connection (after a network change); each
// reconnects from the new network.
func (r *relayLinks) drop(reason string) {
	r.mu.Lock()
	var conns []*quic.Conn
	for _, l := range r.links {
		if l.conn != nil {
			conns = append(conns, l.conn)
		}
	}
	r.mu.Unlock()
	for _, conn := range conns {
		_ = conn.CloseWithError(wire.ConnNormal, reason)
	}
}

func (r *relayLinks) status() []RelayStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []RelayStatus{}
	for id, l := range r.links {
		rs := RelayStatus{ID: id.String(), Addr: l.info.Addr, Connected: l.conn != nil}
		if l.conn != nil {
			rs.RTTMicro = l.conn.ConnectionStats().SmoothedRTT.Microseconds()
		}
		out = append(out, rs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// relayWelcome waits for the relay to accept us: it opens a stream with a
// welcome once our certificate is checked.
func relayWelcome(ctx context.Context, conn *quic.Conn) (string, error) {
	st, err := conn.AcceptUniStream(ctx)
	if err != nil {
		return "", fmt.Errorf("wait for relay welcome: %w", err)
	}
	m, err := wire.Read(st, wire.RelayToClient)
	if err != nil {
		return "", fmt.Errorf("read relay welcome: %w", err)
	}
	return m.(*wire.Welcome).Observed, nil // the only kind of RelayToClient
}
