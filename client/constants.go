package client

import (
	"context"
	"time"
)

// Timings of the client, in one place (traversal has its own).
const (
	// connectWait is how long a new TCP connection waits for a usable
	// path (e.g. right after start-up) before it is refused.
	connectWait = 5 * time.Second
	// natKnownWait bounds how long a first punch attempt waits for both
	// sides' NAT kinds.
	natKnownWait = 2 * time.Second
	// unusedGrace is how long a peer that control stopped naming keeps its
	// connections: long enough to ride out a control server restart.
	unusedGrace = 30 * time.Second
	// sprayListen is how long a destination keeps a winning spray socket
	// for the source's dial.
	sprayListen = 15 * time.Second
	// followSettle and followWait: after our address changed, wait this
	// long before counting the peer's packets, then this long for one, or
	// the direct path is dead.
	followSettle = 300 * time.Millisecond
	followWait   = 1500 * time.Millisecond
	// directIdle and directKeepAlive: a dead direct path is noticed
	// within directIdle.
	directIdle      = 5 * time.Second
	directKeepAlive = peerKeepAlive
	// trafficEvery is how often, at most, moving byte counters are
	// signalled to status watchers.
	trafficEvery = time.Second
	// refusedRetry is how often endpoints control refused are announced
	// again in the same session: a limit may have room by then (a slot
	// freed, control reloaded with a higher limit or another restriction).
	refusedRetry = 30 * time.Second
	// controlQueue bounds the messages waiting for the control stream; a
	// session that falls that far behind is closed and started afresh.
	controlQueue = 16384
)

// sleeper is a reusable timer for loops that pause.
type sleeper struct{ t *time.Timer }

func newSleeper() sleeper { return sleeper{t: time.NewTimer(time.Hour)} }

func (s sleeper) stop() { s.t.Stop() }

// sleep waits d; false if ctx ended first.
func (s sleeper) sleep(ctx context.Context, d time.Duration) bool {
	s.t.Reset(d)
	select {
	case <-ctx.Done():
		return false
	case <-s.t.C:
		return true
	}
}
