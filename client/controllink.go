package client

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/internal/changes"
	"github.com/connetd/connetd/wire"
)

// controlLink is the client's side of its control session. Messages are
// queued and written by the session's one writer goroutine: a control
// stream stalled on flow control delays control messages, nothing else.
type controlLink struct {
	c   *Client
	log *slog.Logger
	up  changes.Signal // a session went live or ended

	mu       sync.Mutex
	sess     *controlSession // nil while control is unreachable
	observed string
	addr     string // the control address of sess
	node     string // the control node's name, from its welcome
	// skew is control's clock minus ours, from the last welcome that
	// carried control's time; kept while disconnected, as the clock
	// rarely jumps.
	skew      time.Duration
	skewKnown bool
}

var errControlStalled = errors.New("control stream stalled: too many messages waiting")

// controlSession is one live session's write side.
type controlSession struct {
	conn  *quic.Conn
	st    *quic.Stream
	wake  chan struct{} // poked when queue gains messages
	mu    sync.Mutex
	queue []wire.Message
	full  bool // overflowed: the session is being closed
}

// Send implements traversal.Control: it queues m on the live session.
func (l *controlLink) Send(m wire.Message) bool {
	l.mu.Lock()
	s := l.sess
	l.mu.Unlock()
	return s != nil && s.enqueue(m)
}

// WaitUp implements traversal.Control.
func (l *controlLink) WaitUp(ctx context.Context) bool {
	for {
		ch := l.up.C()
		if l.live() {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

func (l *controlLink) live() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sess != nil
}

// controlState is the live session as the status shows it.
type controlState struct {
	state, observed, addr, node string
	rttMicros                   int64
}

// state is "connected" with the session's addresses, or "connecting".
func (l *controlLink) state() controlState {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess == nil {
		return controlState{state: "connecting"}
	}
	return controlState{state: "connected", observed: l.observed, addr: l.addr, node: l.node,
		rttMicros: l.sess.conn.ConnectionStats().SmoothedRTT.Microseconds()}
}

// publish makes s the live session; the caller holds Client.mu, so that
// endpoints added meanwhile are announced exactly once (by the caller, or
// by AddSource/AddDestination after it).
func (l *controlLink) publish(s *controlSession, observed, addr, node string) {
	l.mu.Lock()
	l.sess, l.observed, l.addr, l.node = s, observed, addr, node
	l.mu.Unlock()
	l.up.Notify()
}

// withdraw ends s's time as the live session, if it still is.
func (l *controlLink) withdraw(s *controlSession) {
	l.mu.Lock()
	if l.sess != s {
		l.mu.Unlock()
		return
	}
	l.sess = nil
	l.mu.Unlock()
	l.up.Notify()
}

// drop closes the live session (after a network change: control then
// observes the new address on the next one).
func (l *controlLink) drop(reason string) {
	l.mu.Lock()
	s := l.sess
	l.sess = nil
	l.mu.Unlock()
	if s != nil {
		l.up.Notify()
		_ = s.conn.CloseWithError(wire.ConnNormal, reason)
	}
}

func newControlSession(conn *quic.Conn, st *quic.Stream) *controlSession {
	return &controlSession{conn: conn, st: st, wake: make(chan struct{}, 1)}
}

// enqueue never blocks; a session that cannot keep up is closed.
func (s *controlSession) enqueue(m wire.Message) bool {
	s.mu.Lock()
	if s.full {
		s.mu.Unlock()
		return false
	}
	if len(s.queue) >= controlQueue {
		s.full, s.queue = true, nil // the writer ends the session
	} else {
		s.queue = append(s.queue, m)
	}
	full := s.full
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return !full
}

// writeLoop is the only writer of the session's stream after the hello.
func (s *controlSession) writeLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		}
		s.mu.Lock()
		batch, full := s.queue, s.full
		s.queue = nil
		s.mu.Unlock()
		if full {
			return errControlStalled
		}
		for _, m := range batch {
			if err := wire.Write(s.st, m); err != nil {
				return err
			}
		}
	}
}
