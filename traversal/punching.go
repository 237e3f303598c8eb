package traversal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/punch"
	"github.com/connetd/connetd/wire"
)

// attempt is one punch attempt under way.
type attempt struct {
	sess *punch.Session
	goCh chan struct{} // closed by punch_go
	once sync.Once
}

// Outcome is what the dialing side of an attempt gets back.
type Outcome struct {
	Remote netip.AddrPort // the peer's address on the path found
	// Spray is the extra socket the path uses; nil for the direct socket.
	// The caller owns it.
	Spray *net.UDPConn
	Err   error
}

// OnPunch starts our side of an attempt control announced.
func (t *Traversal) OnPunch(m *wire.Punch) {
	if len(m.Nonce) != wire.PunchNonceLen {
		return
	}
	t.spawn(func(ctx context.Context) { t.runPunch(ctx, m) })
}

// OnPunchGo releases an attempt's full-TTL probes.
func (t *Traversal) OnPunchGo(m *wire.PunchGo) {
	if len(m.Nonce) != wire.PunchNonceLen {
		return
	}
	t.mu.Lock()
	run := t.sessions[[wire.PunchNonceLen]byte(m.Nonce)]
	t.mu.Unlock()
	if run != nil {
		run.once.Do(func() { close(run.goCh) })
	}
}

// peerAddrs are the candidates of m this socket can send to, and whether
// the first of them is the one control observed (m.Direct's first).
func (t *Traversal) peerAddrs(m *wire.Punch) (addrs []netip.AddrPort, vouched bool) {
	for i, s := range m.Direct {
		ap, err := netip.ParseAddrPort(s)
		if err != nil || (t.main.v4 && !ap.Addr().Unmap().Is4()) {
			continue
		}
		vouched = vouched || i == 0
		addrs = append(addrs, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return addrs, vouched
}

func (t *Traversal) runPunch(ctx context.Context, m *wire.Punch) {
	t.mu.Lock()
	pending := t.depthPending
	t.mu.Unlock()
	if pending != nil { // the opening TTL is being measured
		select {
		case <-pending:
		case <-time.After(depthBound):
		case <-ctx.Done():
			return
		}
	}
	nonce := [wire.PunchNonceLen]byte(m.Nonce)
	addrs, vouched := t.peerAddrs(m)
	selfNAT, peerNAT := t.NAT(), m.NAT
	// The kinds as measured, for the outcome counts: a many-port mode
	// below acts as if they were other kinds.
	realSelf, realPeer := selfNAT, peerNAT
	switch m.Mode { // control asked for a many-port attempt
	case wire.PunchModeSpray:
		selfNAT, peerNAT = wire.NATHard, wire.NATEasy
	case wire.PunchModeRandom:
		selfNAT, peerNAT = wire.NATEasy, wire.NATHard
	}
	sess := punch.New(punch.Params{
		Nonce: nonce, Self: t.cfg.Self, Peer: m.Peer, PeerAddrs: addrs,
		SelfNAT: selfNAT, PeerNAT: peerNAT,
		// Just past our outermost NAT, as measured (natdepth.go), never
		// guessed higher: an opening packet with one hop too many reaches
		// the far NAT on a short path and spoils it for every later
		// attempt too (its conntrack entry lives on).
		OpenTTL:   openTTL(t.natDepthNow()),
		Unvouched: !vouched,
		Dial:      m.Dial,
	}, t.main, t.limits)
	run := &attempt{sess: sess, goCh: make(chan struct{})}
	log := t.log.With("peer", m.Peer.Short())
	t.mu.Lock()
	if len(t.sessions) >= maxAttempts || t.sessions[nonce] != nil {
		t.mu.Unlock()
		log.Debug("punch attempt ignored: too many under way", "max", maxAttempts)
		return
	}
	t.statsLocked(m.Peer).Attempts++
	t.sessions[nonce] = run
	sockets := max(0, min(sess.WantsSpray(), maxSpraySockets-t.spraying, maxSpraySocketsPerPeer-t.sprayFor[m.Peer]))
	t.spraying += sockets
	if sockets > 0 {
		t.sprayFor[m.Peer] += sockets
	}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.sessions, nonce)
		t.spraying -= sockets
		if t.sprayFor[m.Peer] -= sockets; t.sprayFor[m.Peer] <= 0 {
			delete(t.sprayFor, m.Peer)
		}
		t.mu.Unlock()
	}()

	spray := t.openSpray(ctx, sockets)
	conns := make([]punch.Conn, len(spray.socks))
	for i, s := range spray.socks {
		conns[i] = s
	}
	sess.Open(conns)
	log.Debug("punch opened", "nonce", fmt.Sprintf("%x", nonce), "candidates", addrs, "nat", Name(m.NAT), "spray", len(conns))
	t.cfg.Control.Send(&wire.PunchReady{Nonce: nonce[:]})
	var res punch.Result
	var err error
	wait := time.NewTimer(punchGoWait)
	select {
	case <-run.goCh:
		log.Debug("punch go", "nonce", fmt.Sprintf("%x", nonce))
		res, err = sess.Run(ctx)
	case <-wait.C:
		err = errors.New("control did not release the punch attempt")
	case <-ctx.Done():
		err = ctx.Err()
	}
	wait.Stop()
	winner := spray.keep(res.Conn, err == nil)
	st := sess.Stats()
	t.mu.Lock()
	t.statsLocked(m.Peer).Pairs += st.Pairs + st.Random
	if ctx.Err() == nil { // shutting down or leaving the network is no outcome
		t.countOutcomeLocked(err == nil, realSelf, realPeer)
	}
	t.mu.Unlock()
	if err != nil {
		log.Debug("punch found no direct path", msgid.PunchFailed.Attr(), "err", err, "opened", st.Opened, "pings", st.Pings, "random", st.Random, "received", st.Received)
	} else {
		log.Info("punch found a direct path", "remote", res.Remote.String(), "spray", winner != nil,
			"pings", st.Pings, "random", st.Random)
	}
	if m.Dial {
		t.handOver(m.Peer, Outcome{Remote: res.Remote, Spray: winner, Err: err})
		return
	}
	if winner != nil && t.cfg.ServeSpray != nil {
		t.cfg.ServeSpray(ctx, winner) // the attempt answers probes meanwhile
	} else if winner != nil {
		_ = winner.Close()
	} else if err == nil {
		t.linger(ctx, addrs)
	}
}

// linger keeps a finished attempt answering probes for a moment on the
// side that does not dial, when the peer has candidates of both address
// families: the dialing side chooses between them by the RTT of its
// pings' pongs, and without pongs it cannot time the family it did not
// hear first (package punch, family.go).
func (t *Traversal) linger(ctx context.Context, peer []netip.AddrPort) {
	var v4, v6 bool
	for _, a := range peer {
		v4, v6 = v4 || a.Addr().Is4(), v6 || !a.Addr().Is4()
	}
	if !v4 || !v6 {
		return
	}
	settle := t.limits.Settle
	if settle <= 0 {
		settle = punch.DefaultSettle
	}
	wait := time.NewTimer(settle + punchLingerSlack)
	defer wait.Stop()
	select {
	case <-wait.C:
	case <-ctx.Done():
	}
}

// handOver gives the outcome to the dialing side waiting for it. Under the
// lock: once Punch has removed its waiter, nothing is sent to it any more,
// so a socket nobody takes is closed here.
func (t *Traversal) handOver(peer identity.ID, o Outcome) {
	sent := false
	t.mu.Lock()
	if ch := t.waiters[peer]; ch != nil {
		select {
		case ch <- o:
			sent = true
		default:
		}
	}
	t.mu.Unlock()
	if !sent && o.Spray != nil {
		_ = o.Spray.Close()
	}
}

// spraySet is the extra sockets of a hard side, with their readers.
type spraySet struct {
	socks []*udpSock
	wg    sync.WaitGroup
}

func (t *Traversal) openSpray(ctx context.Context, n int) *spraySet {
	set := &spraySet{}
	if n == 0 {
		return set
	}
	la := t.cfg.Conn.LocalAddr().(*net.UDPAddr)
	network := "udp"
	if la.IP.To4() != nil {
		network = "udp4"
	}
	for range n {
		u, err := net.ListenUDP(network, &net.UDPAddr{IP: la.IP})
		if err != nil {
			t.log.Warn("cannot open spray socket", "err", err)
			break
		}
		s := newUDPSock(u)
		set.socks = append(set.socks, s)
		set.wg.Go(func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := u.ReadFromUDPAddrPort(buf)
				if err != nil || ctx.Err() != nil {
					return
				}
				t.handle(s, from, buf[:n])
			}
		})
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

// Punch runs one attempt toward peer as the dialing side and returns its
// outcome. failures counts the attempts toward peer that failed in a row;
// peerNAT is the peer's NAT behaviour as control reports it.
func (t *Traversal) Punch(ctx context.Context, peer identity.ID, peerNAT string, failures int) Outcome {
	ch := make(chan Outcome, 1)
	t.mu.Lock()
	if t.waiters[peer] != nil {
		t.mu.Unlock()
		return Outcome{Err: errors.New("a punch attempt toward this peer is under way")}
	}
	t.waiters[peer] = ch
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.waiters, peer)
		t.mu.Unlock()
		select { // an outcome that raced our timeout: release its socket
		case o := <-ch:
			if o.Spray != nil {
				_ = o.Spray.Close()
			}
		default:
		}
	}()
	// Control may be reconnecting (after a network change): wait briefly.
	wctx, cancel := context.WithTimeout(ctx, controlWait)
	up := t.cfg.Control.WaitUp(wctx)
	cancel()
	req := &wire.PunchRequest{Peer: peer, Spray: escalation(failures, t.NAT(), peerNAT)}
	if !up || !t.cfg.Control.Send(req) {
		return Outcome{Err: errors.New("control unreachable: cannot coordinate punching")}
	}
	wait := time.NewTimer(punchWait)
	defer wait.Stop()
	select {
	case o := <-ch:
		return o
	case <-wait.C:
		return Outcome{Err: errors.New("no punch attempt within " + punchWait.String())}
	case <-ctx.Done():
		return Outcome{Err: ctx.Err()}
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

// depthBound is how long a punch waits for the first depth measurement:
// under control's 2 s barrier, so that this side is ready before the peer
// is let go.
const depthBound = 1500 * time.Millisecond

func (t *Traversal) natDepthNow() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.natDepth
}
