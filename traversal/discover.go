package traversal

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/connetd/connetd/punch"
	"github.com/connetd/connetd/wire"
)

// discoverNAT learns how the NAT in front of the direct socket maps: it
// compares the address control observed with the address a relay observes
// for the same socket. Equal ports: endpoint-independent ("easy"); different
// ports: a new mapping per destination ("hard"); control's observed address
// being our own: no NAT.
func (t *Traversal) discoverNAT(ctx context.Context) {
	t.mu.Lock()
	obs := t.observed
	relays := slices.Clone(t.relays)
	own := slices.Contains(t.local, obs.Addr())
	t.mu.Unlock()
	if !obs.IsValid() {
		return
	}
	nat, basis := wire.NATUnknown, "no relay answered a reflect request"
	if own || obs.Addr().IsLoopback() {
		nat, basis = wire.NATNone, "control observed one of this host's own addresses ("+obs.String()+")"
	} else {
		slices.SortFunc(relays, func(a, b netip.AddrPort) int { return a.Compare(b) })
		for _, r := range relays {
			got, ok := t.reflect(ctx, r)
			if !ok {
				continue
			}
			if got == obs {
				nat = wire.NATEasy
				basis = "control and relay " + r.String() + " observed the same address " + obs.String()
			} else {
				nat = wire.NATHard
				basis = "control observed " + obs.String() + ", relay " + r.String() + " observed " + got.String()
			}
			break
		}
	}
	t.mu.Lock()
	old := t.nat
	t.nat, t.natBasis = nat, basis
	t.mu.Unlock()
	if old != nat {
		t.log.Info("NAT behaviour", "nat", Name(nat), "observed", obs.String())
		t.cfg.Changed()
	}
}

// discoverDepth measures how far away the outermost NAT is (natdepth.go),
// after discoverNAT: it takes a second or more when routers hold back
// their ICMP errors, so the NAT kind is reported to control first.
func (t *Traversal) discoverDepth(ctx context.Context) {
	t.mu.Lock()
	obs, nat, pending := t.observed, t.nat, t.depthPending
	t.mu.Unlock()
	if pending != nil {
		defer func() {
			t.mu.Lock()
			if t.depthPending == pending {
				t.depthPending = nil
			}
			t.mu.Unlock()
			close(pending)
		}()
	}
	if !obs.IsValid() {
		return
	}
	depth := 0
	if nat != wire.NATNone {
		d, err := natDepth(ctx, obs.Addr())
		if err != nil {
			t.log.Debug("NAT depth not found: opening punches with the default TTL", "err", err, "open_ttl", punch.DefaultOpenTTL)
		}
		depth = d
	}
	t.mu.Lock()
	oldDepth := t.natDepth
	t.natDepth = depth
	t.mu.Unlock()
	if oldDepth != depth {
		t.log.Info("NAT depth", "nat_hops", depth, "open_ttl", openTTL(depth), "observed", obs.String())
		t.cfg.Changed()
	}
}

// openTTL is the TTL of a punch's opening packets for an outermost NAT
// depth hops away (0: unknown): one more, so that the NAT forwards them.
func openTTL(depth int) int {
	if depth < 1 {
		return punch.DefaultOpenTTL
	}
	return depth + 1
}

// NATDepth is the hop count to the outermost NAT (0: none, or unknown) and
// the TTL punch openings use.
func (t *Traversal) NATDepth() (hops, ttl int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.natDepth, openTTL(t.natDepth)
}

// Name is how status shows a wire.NAT* value.
func Name(nat string) string {
	if nat == wire.NATUnknown {
		return "unknown"
	}
	return nat
}

// reflect asks the server at addr which address it sees for the direct
// socket.
func (t *Traversal) reflect(ctx context.Context, addr netip.AddrPort) (netip.AddrPort, bool) {
	var tx [wire.ReflectTxIDLen]byte
	_, _ = rand.Read(tx[:])
	ch := make(chan netip.AddrPort, 1)
	t.mu.Lock()
	t.reflects[tx] = ch
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.reflects, tx)
		t.mu.Unlock()
	}()
	req := wire.AppendReflect(nil, wire.Reflect{TxID: tx})
	wait := time.NewTimer(reflectWait)
	defer wait.Stop()
	for range reflectTries {
		if err := t.main.WriteTo(req, addr, 0); err != nil {
			return netip.AddrPort{}, false
		}
		wait.Reset(reflectWait)
		select {
		case got := <-ch:
			return got, true
		case <-ctx.Done():
			return netip.AddrPort{}, false
		case <-wait.C:
		}
	}
	return netip.AddrPort{}, false
}

// readDirect reads the direct socket's non-QUIC datagrams: reflect replies
// and punch probes.
func (t *Traversal) readDirect(ctx context.Context) {
	buf := make([]byte, 1500)
	for {
		n, from, err := t.cfg.Transport.ReadNonQUICPacket(ctx, buf)
		if err != nil {
			return
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		t.handle(t.main, ua.AddrPort(), buf[:n])
	}
}

// handle dispatches one datagram received on sock.
func (t *Traversal) handle(sock punch.Conn, from netip.AddrPort, b []byte) {
	if r, err := wire.ParseReflect(b); err == nil && r.Reply {
		t.mu.Lock()
		ch := t.reflects[r.TxID]
		t.mu.Unlock()
		if ch != nil {
			select {
			case ch <- r.Observed:
			default:
			}
		}
		return
	}
	pr, err := wire.ParseProbe(b)
	if err != nil {
		return
	}
	t.mu.Lock()
	run := t.sessions[pr.Nonce]
	t.mu.Unlock()
	if run != nil {
		run.sess.Handle(sock, from, b)
	}
}
