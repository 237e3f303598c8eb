package client

import (
	"io"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/wire"
)

// acker sends the acknowledgements of resumable flows over one peer
// connection, on a unidirectional stream it opens on first use. Records
// of one flow replace each other while they wait; a burst of small ones
// waits up to ackDelay to go together.
type acker struct {
	conn    *quic.Conn
	mu      sync.Mutex
	pending map[rflowKey]wire.FlowAck
	wake    chan struct{}
	urgent  chan struct{}
}

// postAck queues a for the peer over conn; urgent skips the delay.
func (p *peer) postAck(conn *quic.Conn, a wire.FlowAck, urgent bool) {
	p.mu.Lock()
	ak := p.ackers[conn]
	if ak == nil {
		if p.closed || conn.Context().Err() != nil {
			p.mu.Unlock()
			return
		}
		ak = &acker{conn: conn, pending: map[rflowKey]wire.FlowAck{}, wake: make(chan struct{}, 1), urgent: make(chan struct{}, 1)}
		if p.ackers == nil {
			p.ackers = map[*quic.Conn]*acker{}
		}
		p.ackers[conn] = ak
		p.wg.Go(func() {
			ak.run(p)
			p.mu.Lock()
			delete(p.ackers, conn)
			p.mu.Unlock()
		})
	}
	p.mu.Unlock()
	ak.mu.Lock()
	ak.pending[rflowKey{a.Flow, a.Opener}] = a
	ak.mu.Unlock()
	signal(ak.wake)
	if urgent {
		signal(ak.urgent)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// run writes queued records until the connection or the peer ends, or
// the stream fails (a later post starts a new acker).
func (ak *acker) run(p *peer) {
	var st *quic.SendStream
	defer func() {
		if st != nil {
			st.CancelWrite(wire.StreamAborted)
		}
	}()
	delay := newSleeper()
	defer delay.stop()
	done := ak.conn.Context().Done()
	var out []byte
	for {
		select {
		case <-ak.wake:
		case <-done:
			return
		case <-p.ctx.Done():
			return
		}
		select {
		case <-ak.urgent:
		default:
			delay.t.Reset(ackDelay)
			select {
			case <-delay.t.C:
			case <-ak.urgent:
				delay.t.Stop()
			case <-done:
				return
			case <-p.ctx.Done():
				return
			}
		}
		ak.mu.Lock()
		out = out[:0]
		for k, a := range ak.pending {
			out = a.Append(out)
			delete(ak.pending, k)
		}
		ak.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		if st == nil {
			s, err := ak.conn.OpenUniStream()
			if err != nil {
				return
			}
			st = s
			out = append([]byte{wire.AckStreamType}, out...)
		}
		if _, err := st.Write(out); err != nil {
			return
		}
	}
}

// readAcks hands the peer's acknowledgements on conn to our flows until
// the connection ends. A malformed record ends that stream only.
func (p *peer) readAcks(conn *quic.Conn) {
	for {
		st, err := conn.AcceptUniStream(p.ctx)
		if err != nil {
			return
		}
		p.readAckStream(st)
	}
}

func (p *peer) readAckStream(st *quic.ReceiveStream) {
	if err := wire.ReadAckStreamType(st); err != nil {
		st.CancelRead(wire.StreamBadRequest)
		return
	}
	var rec [wire.FlowAckSize]byte
	for {
		if _, err := io.ReadFull(st, rec[:]); err != nil {
			st.CancelRead(wire.StreamAborted)
			return
		}
		a, err := wire.ParseFlowAck(rec[:])
		if err != nil {
			p.c.log.Warn("malformed flow acknowledgement", "peer", p.id.Short(), "err", err)
			st.CancelRead(wire.StreamBadRequest)
			return
		}
		if f := p.flow(rflowKey{a.Flow, a.Opener}); f != nil {
			f.acked(a)
		}
	}
}

// flowMoves counts flow moves by old and new path, keeps the longest
// stall one caused, and the last few moves, numbered, so that D-Bus can
// signal each once.
type flowMoves struct {
	mu       sync.Mutex
	counts   map[string]int64 // "relay→direct" etc.
	maxStall time.Duration
	seq      int64
	recent   []FlowMove // the last recentMoves, oldest first
}

// recentMoves bounds the moves status lists.
const recentMoves = 16

// FlowMove is one move of a resumable flow, for status.
type FlowMove struct {
	Seq      int64  `json:"seq"`  // 1 for the client's first move, and on
	Kind     string `json:"kind"` // our side of the flow: source or destination
	Endpoint string `json:"endpoint"`
	Peer     string `json:"peer"`
	Old      string `json:"old_path"` // none: the stream had died with no other path up
	New      string `json:"new_path"`
	StallMS  int64  `json:"stall_ms"` // from leaving the old stream to sending on the new
	At       string `json:"at"`
}

func (m *flowMoves) note(mv FlowMove, stall time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counts == nil {
		m.counts = map[string]int64{}
	}
	m.counts[mv.Old+"→"+mv.New]++
	m.maxStall = max(m.maxStall, stall)
	m.seq++
	mv.Seq, mv.StallMS, mv.At = m.seq, stall.Milliseconds(), time.Now().UTC().Format(time.RFC3339Nano)
	if len(m.recent) == recentMoves {
		m.recent = append(m.recent[:0], m.recent[1:]...)
	}
	m.recent = append(m.recent, mv)
}

// FlowMovesStatus is what status shows of flow moves.
type FlowMovesStatus struct {
	Counts     map[string]int64 `json:"counts,omitempty"`
	MaxStallMS int64            `json:"max_stall_ms"`
	Recent     []FlowMove       `json:"recent,omitempty"`
}

func (m *flowMoves) status() FlowMovesStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := FlowMovesStatus{Counts: map[string]int64{}, MaxStallMS: m.maxStall.Milliseconds(), Recent: slices.Clone(m.recent)}
	for k, v := range m.counts {
		s.Counts[k] = v
	}
	return s
}
