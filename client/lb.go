package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// Load-balancing policies of a TCP source (connet's lb-policy).
const (
	// LBNone keeps the default order: direct before relayed, then lower
	// RTT.
	LBNone         = ""
	LBLeastLatency = "least-latency"
	LBLeastConns   = "least-conns"
	LBRoundRobin   = "round-robin"
	LBRandom       = "random"
)

// Retry policies of a TCP source (connet's lb-retry): which further
// destinations a connection tries when the first refuses it.
const (
	LBRetryNever = ""      // only the first
	LBRetryCount = "count" // the first RetryMax
	LBRetryTimed = "timed" // in order until RetryMax milliseconds passed
	LBRetryAll   = "all"   // every one, in order
)

// LBConfig is a TCP source's load balancing; the zero value is connetd's
// default: the best path among all destinations, no retry.
type LBConfig struct {
	Policy   string
	Retry    string
	RetryMax int // count: tries; timed: milliseconds
}

// ackWait bounds the wait for a destination's answer when the source asked
// for one: longer than the destination's dial of its service (10 s).
const ackWait = 15 * time.Second

func (l LBConfig) check() error {
	switch l.Policy {
	case LBNone, LBLeastLatency, LBLeastConns, LBRoundRobin, LBRandom:
	default:
		return fmt.Errorf("lb policy %q is not one of least-latency, least-conns, round-robin, random", l.Policy)
	}
	switch l.Retry {
	case LBRetryNever, LBRetryAll:
	case LBRetryCount, LBRetryTimed:
		if l.RetryMax <= 0 {
			return fmt.Errorf("lb retry %q needs a positive retry max", l.Retry)
		}
	default:
		return fmt.Errorf("lb retry %q is not one of count, timed, all", l.Retry)
	}
	return nil
}

// lbState is a source's balancing state; it has its own lock.
type lbState struct {
	cfg LBConfig

	mu    sync.Mutex
	next  int                 // round-robin: where the next rotation starts
	conns map[identity.ID]int // connections tried or carried now, by destination peer
}

func newLBState(cfg LBConfig) *lbState {
	return &lbState{cfg: cfg, conns: map[identity.ID]int{}}
}

// enabled reports whether the source balances (else forward's original
// path: the single best connection, as before load balancing existed).
func (l *lbState) enabled() bool {
	return l != nil && (l.cfg.Policy != LBNone || l.cfg.Retry != LBRetryNever)
}

// candidate is one connection a TCP connection may go over.
type candidate struct {
	p    *peer
	pa   path
	conn *quic.Conn
	rtt  time.Duration
}

// pathsFor is every usable connection to the peer for our source name,
// best first (pathFor is the first of them).
func (p *peer) pathsFor(name string) []candidate {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.asDestination[name]
	if !ok {
		return nil
	}
	var out []candidate
	for _, cand := range []candidate{{p: p, conn: p.directConn, pa: pathDirect}, {p: p, conn: p.relayConn, pa: pathRelay}} {
		if cand.conn == nil || !r.allow(cand.pa) || (cand.pa == pathDirect && p.migrating) {
			continue
		}
		cand.rtt = cand.conn.ConnectionStats().SmoothedRTT
		out = append(out, cand)
	}
	return out
}

// candidates lists the connections of source name in the default order:
// direct before relayed, then lower RTT, then peer ID (so round-robin
// rotates over a stable order). With a policy, one per peer: its best.
func (c *Client) candidates(name string, all bool) []candidate {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []candidate
	for _, p := range c.peers {
		cs := p.pathsFor(name)
		if !all && len(cs) > 1 {
			cs = cs[:1]
		}
		out = append(out, cs...)
	}
	slices.SortFunc(out, func(a, b candidate) int {
		switch {
		case a.pa != b.pa:
			return int(a.pa) - int(b.pa)
		case a.rtt != b.rtt:
			if a.rtt < b.rtt {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.p.id[:], b.p.id[:])
	})
	return out
}

// order puts the candidates in the policy's order and holds the first
// (counts it as one of its peer's connections), under one lock so that
// concurrent connections see each other's choices.
func (l *lbState) order(cs []candidate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.cfg.Policy {
	case LBLeastConns:
		slices.SortStableFunc(cs, func(a, b candidate) int { return l.conns[a.p.id] - l.conns[b.p.id] })
	case LBRoundRobin:
		slices.SortStableFunc(cs, func(a, b candidate) int { return bytes.Compare(a.p.id[:], b.p.id[:]) })
		k := l.next % len(cs)
		l.next = k + 1
		slices.Reverse(cs[:k])
		slices.Reverse(cs[k:])
		slices.Reverse(cs)
	case LBRandom:
		rand.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
	}
	// LBLeastLatency and LBNone: the default order already is.
	l.conns[cs[0].p.id]++
}

func (l *lbState) hold(id identity.ID) {
	l.mu.Lock()
	l.conns[id]++
	l.mu.Unlock()
}

func (l *lbState) release(id identity.ID) {
	l.mu.Lock()
	if l.conns[id]--; l.conns[id] <= 0 {
		delete(l.conns, id)
	}
	l.mu.Unlock()
}

// tries is how many of n candidates a connection may try.
func (l *lbState) tries(n int) int {
	switch l.cfg.Retry {
	case LBRetryNever:
		return min(n, 1)
	case LBRetryCount:
		return min(n, l.cfg.RetryMax)
	}
	return n
}

// forwardLB is forward for a source that balances: it orders the
// destinations by the policy and tries them as the retry policy allows.
// When a further try is possible, each try asks the destination to answer
// once it has dialed its service (Connect.Ack), so that a refusal is
// known before any of the client's bytes are sent: one round trip more
// before the first byte, paid only then.
func (s *source) forwardLB(ctx context.Context, c *Client, tc *net.TCPConn) {
	log := c.log.With("endpoint", s.name, "from", tc.RemoteAddr().String())
	deadline := time.NewTimer(connectWait)
	defer deadline.Stop()
	for {
		changed := c.changed.C()
		if cs := c.candidates(s.name, s.lb.cfg.Policy == LBNone); len(cs) > 0 {
			done, dead := s.try(c, tc, cs, log)
			if done {
				return
			}
			if !dead {
				log.Warn("refusing connection: no destination accepted it", "destinations", len(cs),
					"policy", s.lb.cfg.Policy, "retry", s.lb.cfg.Retry)
				_ = tc.Close()
				return
			}
			// Every connection tried died under us: wait for a path to be
			// redone, as forward does.
		}
		select {
		case <-changed:
			continue
		case <-deadline.C:
		case <-ctx.Done():
		}
		log.Warn("refusing connection: no usable path to a destination", "waited", connectWait.String())
		_ = tc.Close()
		return
	}
}

// try tries the candidates in the policy's order, as far as the retry
// policy allows, and carries the connection over the first that takes it
// (done). dead reports that every try failed on a connection that had
// died, none refused by a live destination.
func (s *source) try(c *Client, tc *net.TCPConn, cs []candidate, log *slog.Logger) (done, dead bool) {
	l := s.lb
	n := l.tries(len(cs))
	ack := n > 1
	start := time.Now()
	l.order(cs)
	dead = true
	for i, cd := range cs[:n] {
		if i > 0 {
			if l.cfg.Retry == LBRetryTimed && time.Since(start) >= time.Duration(l.cfg.RetryMax)*time.Millisecond {
				break
			}
			l.hold(cd.p.id)
		}
		flow := newFlowID()
		st, err := s.open(cd, tc, ack, flow)
		if err != nil {
			l.release(cd.p.id)
			dead = dead && cd.conn.Context().Err() != nil
			log.Debug("destination refused the connection", "peer", cd.p.id.Short(), "route", cd.pa.String(), "try", i+1, "err", err)
			continue
		}
		log.Debug("connection routed", "peer", cd.p.id.Short(), "route", cd.pa.String(), "try", i+1)
		p := cd.p
		p.carry(tc, st, cd.conn, cd.pa, s.name, flow, true, &s.traffic, &p.traffic)
		l.release(p.id)
		return true, false
	}
	return false, dead
}

// errRefused wraps a destination's refusal of a stream.
var errRefused = errors.New("destination refused")

// open opens a stream to the candidate and sends Connect; with ack it
// waits for the destination's answer (FlowReady), which comes only once
// its service is dialed.
func (s *source) open(cd candidate, tc *net.TCPConn, ack bool, flow uint64) (*quic.Stream, error) {
	st, err := cd.conn.OpenStream()
	if err != nil {
		return nil, err
	}
	if !resumable(cd.conn) {
		flow = 0
	}
	if err := wire.Write(st, &wire.Connect{Endpoint: s.name, From: tc.RemoteAddr().String(), Ack: ack, Flow: flow}); err != nil {
		abort(st, wire.StreamAborted)
		return nil, err
	}
	if !ack {
		return st, nil
	}
	_ = st.SetReadDeadline(time.Now().Add(ackWait))
	m, err := wire.Read(st, wire.FlowStream)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil {
		abort(st, wire.StreamAborted)
		var serr *quic.StreamError
		if errors.As(err, &serr) {
			return nil, fmt.Errorf("%w: code %#x", errRefused, uint64(serr.ErrorCode))
		}
		return nil, err
	}
	if _, ok := m.(*wire.FlowReady); !ok {
		abort(st, wire.StreamAborted)
		return nil, fmt.Errorf("%w: unexpected answer", errRefused)
	}
	return st, nil
}

// active is the endpoint's connections with the peer being proxied now,
// over all paths.
func (t *pathTraffic) active(endpoint string, weAreSource bool) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for _, pa := range []path{pathDirect, pathRelay} {
		if c := t.m[pathKey{endpoint, weAreSource, pa}]; c != nil {
			n += c.active.Load()
		}
	}
	return n
}
