package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/punch"
	"github.com/connetd/connetd/wire"
)

// Punching: our side of the attempts control coordinates (package punch
// has the sequence and docs/nat-traversal.md the reasons).

// onPunch starts our side of an attempt control announced.
func (c *Client) onPunch(ctx context.Context, m *wire.Punch) {
	if len(m.Nonce) != wire.PunchNonceLen {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.runPunch(ctx, m)
	}()
}

// onPunchGo releases the attempt's full-TTL probes.
func (c *Client) onPunchGo(m *wire.PunchGo) {
	if len(m.Nonce) != wire.PunchNonceLen {
		return
	}
	t := c.trav
	t.mu.Lock()
	run := t.sessions[[wire.PunchNonceLen]byte(m.Nonce)]
	t.mu.Unlock()
	if run != nil {
		run.once.Do(func() { close(run.goCh) })
	}
}

func (c *Client) runPunch(ctx context.Context, m *wire.Punch) {
	t := c.trav
	nonce := [wire.PunchNonceLen]byte(m.Nonce)
	var addrs []netip.AddrPort
	for _, s := range m.Direct {
		ap, err := netip.ParseAddrPort(s)
		if err != nil || (t.main.v4 && !ap.Addr().Unmap().Is4()) {
			continue
		}
		addrs = append(addrs, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	c.mu.Lock()
	if p := c.peers[m.Peer]; p != nil {
		p.punchAttempts++
	}
	c.mu.Unlock()
	selfNAT, peerNAT := c.natType(), m.NAT
	switch m.Mode { // control asked for a many-port attempt
	case wire.PunchModeSpray:
		selfNAT, peerNAT = wire.NATHard, wire.NATEasy
	case wire.PunchModeRandom:
		selfNAT, peerNAT = wire.NATEasy, wire.NATHard
	}
	sess := punch.New(punch.Params{
		Nonce: nonce, Self: c.id.ID, Peer: m.Peer, PeerAddrs: addrs,
		SelfNAT: selfNAT, PeerNAT: peerNAT,
		// Always the default: an opening packet with one hop too many
		// reaches the far NAT on a short path and spoils it for every
		// later attempt too (its conntrack entry lives on).
		OpenTTL: punch.DefaultOpenTTL,
	}, t.main, punch.DefaultLimits)
	run := &punchRun{sess: sess, peer: m.Peer, goCh: make(chan struct{})}
	t.mu.Lock()
	t.sessions[nonce] = run
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.sessions, nonce)
		t.mu.Unlock()
	}()
	log := c.log.With("peer", m.Peer.Short())

	spray := c.openSpray(ctx, run, sess.WantsSpray())
	conns := make([]punch.Conn, len(spray.socks))
	for i, s := range spray.socks {
		conns[i] = s
	}
	sess.Open(conns)
	log.Debug("punch opened", "nonce", fmt.Sprintf("%x", nonce), "candidates", addrs, "nat", natName(m.NAT), "spray", len(conns))
	c.mu.Lock()
	c.sendLocked(&wire.PunchReady{Nonce: nonce[:]})
	c.mu.Unlock()
	var res punch.Result
	var err error
	select {
	case <-run.goCh:
		log.Debug("punch go", "nonce", fmt.Sprintf("%x", nonce))
		res, err = sess.Run(ctx)
	case <-time.After(punchGoWait):
		err = errors.New("control did not release the punch attempt")
	case <-ctx.Done():
		err = ctx.Err()
	}
	winner := spray.keep(res.Conn, err == nil)
	st := sess.Stats()
	c.mu.Lock()
	if p := c.peers[m.Peer]; p != nil {
		p.pairsTried += st.Pairs + st.Random
	}
	c.mu.Unlock()
	if err != nil {
		log.Debug("punch found no direct path", "err", err, "opened", st.Opened, "pings", st.Pings, "random", st.Random, "received", st.Received)
	} else {
		log.Info("punch found a direct path", "remote", res.Remote.String(), "spray", winner != nil,
			"pings", st.Pings, "random", st.Random)
	}
	if m.Dial {
		// Handed over under the lock: once punchPeer has removed its
		// waiter, nothing is sent to it any more.
		sent := false
		t.mu.Lock()
		if ch := t.waiters[m.Peer]; ch != nil {
			select {
			case ch <- punchOutcome{res: res, spray: winner, stats: st, err: err}:
				sent = true
			default:
			}
		}
		t.mu.Unlock()
		if !sent && winner != nil {
			_ = winner.Close()
		}
		return
	}
	if winner != nil {
		c.serveSprayWinner(ctx, winner)
	}
}

// spraySet is the extra sockets of a hard side, with their readers.
type spraySet struct {
	socks []*udpSock
	wg    sync.WaitGroup
}

func (c *Client) openSpray(ctx context.Context, run *punchRun, n int) *spraySet {
	set := &spraySet{}
	if n == 0 {
		return set
	}
	la := c.cfg.DirectConn.LocalAddr().(*net.UDPAddr)
	network := "udp"
	if la.IP.To4() != nil {
		network = "udp4"
	}
	for range n {
		u, err := net.ListenUDP(network, &net.UDPAddr{IP: la.IP})
		if err != nil {
			c.log.Warn("cannot open spray socket", "err", err)
			break
		}
		s := newUDPSock(u)
		set.socks = append(set.socks, s)
		set.wg.Add(1)
		go func() {
			defer set.wg.Done()
			buf := make([]byte, 1500)
			for {
				n, from, err := u.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if ctx.Err() != nil {
					return
				}
				run.sess.Handle(s, from, buf[:n])
			}
		}()
	}
	return set
}

// keep stops the readers and closes every spray socket except the winner,
// which it returns (nil if the path uses the direct socket).
func (set *spraySet) keep(winner punch.Conn, ok bool) *net.UDPConn {
	var kept *net.UDPConn
	for _, s := range set.socks {
		if ok && punch.Conn(s) == winner {
			kept = s.conn
			_ = s.conn.SetReadDeadline(time.Now()) // stop its reader; QUIC takes over
			continue
		}
		_ = s.conn.Close()
	}
	set.wg.Wait()
	if kept != nil {
		_ = kept.SetReadDeadline(time.Time{})
	}
	return kept
}

// punchPeer runs one attempt as the dialing side and returns its outcome.
func (c *Client) punchPeer(p *peer) punchOutcome {
	t := c.trav
	ch := make(chan punchOutcome, 1)
	t.mu.Lock()
	if t.waiters[p.id] != nil {
		t.mu.Unlock()
		return punchOutcome{err: errors.New("a punch attempt toward this peer is under way")}
	}
	t.waiters[p.id] = ch
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.waiters, p.id)
		t.mu.Unlock()
		select { // an outcome that raced our timeout: release its socket
		case o := <-ch:
			if o.spray != nil {
				_ = o.spray.Close()
			}
		default:
		}
	}()
	// Control may be reconnecting (after a network change): wait briefly.
	c.mu.Lock()
	for deadline := time.Now().Add(controlWait); c.ctl == nil && time.Now().Before(deadline) && p.ctx.Err() == nil; {
		c.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		c.mu.Lock()
	}
	if c.ctl == nil {
		c.mu.Unlock()
		return punchOutcome{err: errors.New("control unreachable: cannot coordinate punching")}
	}
	c.sendLocked(&wire.PunchRequest{Peer: p.id, Spray: escalation(p.punchFailures, c.natType(), p.nat)})
	c.mu.Unlock()
	select {
	case o := <-ch:
		return o
	case <-time.After(punchWait):
		return punchOutcome{err: errors.New("no punch attempt within " + punchWait.String())}
	case <-p.ctx.Done():
		return punchOutcome{err: p.ctx.Err()}
	}
}

// escalation picks the kind of attempt after `failures` failed ones in a
// row. The first is what the NAT kinds call for. After a failure, NAT state
// may be spoiled for the sockets' current mappings (a NAT that kept a
// stale entry moves the next mapping to another port), so the following
// attempts open fresh mappings: many-port attempts from alternating sides.
// Between two hard NATs this cannot help, and is not tried.
func escalation(failures int, self, peer string) string {
	if failures == 0 || (self == wire.NATHard && peer == wire.NATHard) {
		return ""
	}
	if failures%2 == 1 {
		return wire.PunchSprayDestination
	}
	return wire.PunchSpraySource
}

// followChange decides, after our address changed, whether a direct
// connection we dialed survived: QUIC moves a connection to the new
// address by itself (the dialer's NAT rebinding) when the peer accepts
// packets from it — a peer without NAT or firewall does; a peer behind a
// NAT drops them. If packets still arrive, the connection and the TCP
// connections it carries go on; otherwise it is closed at once (rather
// than after the idle timeout) and a new path is punched. Meanwhile new
// TCP connections go through the relay.
func (c *Client) followChange(p *peer, conn *quic.Conn) {
	defer func() {
		c.mu.Lock()
		p.migrating = false
		c.notifyChangedLocked()
		c.mu.Unlock()
	}()
	// Packets the peer sent before the change may still arrive: start
	// counting after them.
	select {
	case <-time.After(followSettle):
	case <-conn.Context().Done():
		return
	}
	before := conn.ConnectionStats().PacketsReceived
	deadline := time.NewTimer(followWait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-conn.Context().Done():
			return
		case <-deadline.C:
			c.log.Info("direct path did not survive the network change; punching a new one", "peer", p.id.Short())
			_ = conn.CloseWithError(wire.ConnNormal, "network changed")
			return
		case <-tick.C:
			if conn.ConnectionStats().PacketsReceived > before {
				c.log.Info("direct path survived the network change", "peer", p.id.Short())
				return
			}
		}
	}
}
