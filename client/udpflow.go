package client

import (
	"bytes"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// UDP flow settings' defaults.
const (
	// DefaultUDPIdle ends a flow no datagram moved on for this long.
	DefaultUDPIdle = 60 * time.Second
	// DefaultUDPMaxFlows caps the open flows of one endpoint.
	DefaultUDPMaxFlows = 4096
	// maxUDPPayload is the largest datagram a UDP socket delivers.
	maxUDPPayload = 65535
	// flowPending is how many datagrams a flow holds while its stream is
	// being set up (or moved to a new path); more are dropped and counted.
	flowPending = 64
	// flowSetup bounds the wait for the destination's flow_ready.
	flowSetup = 10 * time.Second
	// udpSourceBuffer is the socket buffer a udp source asks for.
	udpSourceBuffer = 4 << 20
)

// heldDatagrams are a flow's datagrams waiting for a path: at most
// flowPending of them.
type heldDatagrams struct {
	list  [][]byte
	since time.Time // when the oldest came
}

// add keeps a copy of b; false if the queue is full.
func (h *heldDatagrams) add(b []byte) bool {
	if len(h.list) >= flowPending {
		return false
	}
	if len(h.list) == 0 {
		h.since = time.Now()
	}
	h.list = append(h.list, bytes.Clone(b))
	return true
}

// take empties the queue, returning what it held.
func (h *heldDatagrams) take() [][]byte {
	l := h.list
	h.list = nil
	return l
}

// UDPConfig is how an endpoint carries UDP; the zero value takes the
// defaults.
type UDPConfig struct {
	IdleTimeout time.Duration // DefaultUDPIdle when 0
	MaxFlows    int           // DefaultUDPMaxFlows when 0
}

func (u UDPConfig) withDefaults() UDPConfig {
	if u.IdleTimeout <= 0 {
		u.IdleTimeout = DefaultUDPIdle
	}
	if u.MaxFlows <= 0 {
		u.MaxFlows = DefaultUDPMaxFlows
	}
	return u
}

// udpCounters are one UDP endpoint's counts of what it could not carry.
type udpCounters struct {
	flows    atomic.Int64 // open now
	refused  atomic.Int64 // flows refused: the endpoint's cap was reached
	oversize atomic.Int64 // datagrams larger than the path carries
	dropped  atomic.Int64 // datagrams with no path, or while a flow's queue was full
	// warned limits the warnings of refused and uncarried flows, which a
	// busy client would otherwise repeat for every datagram.
	warned rateLimit
}

// rateLimit lets one event through per interval.
type rateLimit struct{ last atomic.Int64 }

// allow reports whether an event may happen now, at most once per every.
func (r *rateLimit) allow(every time.Duration) bool {
	now := time.Now().UnixNano()
	last := r.last.Load()
	return (last == 0 || now-last >= int64(every)) && r.last.CompareAndSwap(last, now)
}

// udpWarnEvery is how often, at most, an endpoint warns of flows it
// refuses or cannot carry.
const udpWarnEvery = 10 * time.Second

// UDPStatus is a UDP endpoint's flows and drops.
type UDPStatus struct {
	Flows        int64 `json:"flows"`
	MaxFlows     int   `json:"max_flows"`
	IdleTimeoutS int64 `json:"idle_timeout_s"`
	FlowsRefused int64 `json:"flows_refused"`
	// DroppedOversize counts datagrams larger than MaxPayload was when
	// they came; DroppedOther those with no path to send them on.
	DroppedOversize int64 `json:"dropped_oversize"`
	DroppedOther    int64 `json:"dropped_other"`
	// MaxPayload is the largest UDP payload the endpoint's best path
	// carries now (0 with no path): larger datagrams are dropped, never
	// split.
	MaxPayload int `json:"max_payload,omitempty"`
}

func (u *udpCounters) status(cfg UDPConfig, best *quic.Conn) *UDPStatus {
	st := &UDPStatus{Flows: u.flows.Load(), MaxFlows: cfg.MaxFlows, IdleTimeoutS: int64(cfg.IdleTimeout / time.Second),
		FlowsRefused: u.refused.Load(), DroppedOversize: u.oversize.Load(), DroppedOther: u.dropped.Load()}
	if best != nil {
		st.MaxPayload = maxFlowPayload(best)
	}
	return st
}

// idleClock is when a flow last moved a datagram, either way.
type idleClock struct{ last atomic.Int64 }

func (c *idleClock) touch() { c.last.Store(time.Now().UnixNano()) }

// remaining is the time left before the flow is idle for d.
func (c *idleClock) remaining(d time.Duration) time.Duration {
	return time.Until(time.Unix(0, c.last.Load()).Add(d))
}

// countOut and countIn add n bytes sent to (received from) a peer to
// each counter, and tell status watchers.
func (c *Client) countOut(n int, ts ...*traffic) {
	for _, t := range ts {
		t.out.Add(int64(n))
	}
	c.traffic.moved()
}

func (c *Client) countIn(n int, ts ...*traffic) {
	for _, t := range ts {
		t.in.Add(int64(n))
	}
	c.traffic.moved()
}
