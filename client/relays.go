package client

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// relayLink is the client's own connection to one relay. Relayed peer
// connections go through relays whose link is up.
type relayLink struct {
	info   wire.Relay
	addr   netip.AddrPort
	cancel context.CancelFunc
	conn   *quic.Conn // guarded by Client.mu; nil while down
}

// updateRelays applies control's list of relays.
func (c *Client) updateRelays(ctx context.Context, m *wire.Relays) {
	resolved := map[identity.ID]netip.AddrPort{}
	for _, r := range m.Relays {
		ua, err := net.ResolveUDPAddr("udp", r.Addr)
		if err != nil {
			c.log.Warn("cannot resolve relay address", "relay", r.ID.Short(), "addr", r.Addr, "err", err)
			continue
		}
		ap := ua.AddrPort()
		resolved[r.ID] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	want := map[identity.ID]wire.Relay{}
	for _, r := range m.Relays {
		if _, ok := resolved[r.ID]; ok {
			want[r.ID] = r
		}
	}
	for id, l := range c.relays {
		if w, ok := want[id]; !ok || w.Addr != l.info.Addr || string(w.Cert) != string(l.info.Cert) {
			l.cancel()
			delete(c.relays, id)
		}
	}
	addrs := make([]netip.AddrPort, 0, len(want))
	for id, r := range want {
		addrs = append(addrs, resolved[id])
		if c.relays[id] != nil {
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		l := &relayLink{info: r, addr: resolved[id], cancel: cancel}
		c.relays[id] = l
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.runRelayLink(lctx, l)
		}()
	}
	c.relayNet.SetRelays(addrs)
}

func (c *Client) runRelayLink(ctx context.Context, l *relayLink) {
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
		c.mu.Lock()
		l.conn = conn
		c.wakePeersLocked()
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			_ = conn.CloseWithError(wire.ConnNormal, "relay no longer used")
		case <-conn.Context().Done():
			log.Warn("lost relay", "err", context.Cause(conn.Context()))
		}
		c.mu.Lock()
		l.conn = nil
		c.mu.Unlock()
	}
}

// liveRelaysLocked lists the relays whose link is up.
func (c *Client) liveRelaysLocked() []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range c.relays {
		if l.conn != nil {
			out = append(out, l.addr)
		}
	}
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
