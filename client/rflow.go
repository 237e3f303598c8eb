package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/bufpool"
	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/replay"
	"github.com/connetd/connetd/wire"
)

// rflow is one resumable TCP flow (docs/protocol.md §4.7): the TCP
// connection outlives the QUIC stream that carries it. Each side keeps
// what it sent until the peer acknowledges having written it to its own
// TCP side; when the stream dies with its path, or the source moves the
// flow to a better path, the source opens a new stream with Resume, both
// sides say how much they have, and each resends from there.
//
// Three goroutines move the bytes: tcpIn (TCP → replay buffer),
// streamOut (replay buffer → the current stream) and streamIn (the current
// stream → TCP). Only the source recovers a flow whose stream died
// (relocate); the destination waits for the Resume (awaitResume).
type rflow struct {
	id     uint64
	opener bool // we are the source: we picked id and we resume
	p      *peer
	name   string
	tcp    halfConn   // the TCP connection, or a TLS or WebSocket one over it
	base   []*traffic // path-independent counters
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	moveMu sync.Mutex // one resume at a time

	mu   sync.Mutex
	cond *sync.Cond
	st   *quic.Stream // nil while detached
	conn *quic.Conn
	pa   path
	// gen counts attachments and detachments: a stream operation that
	// finishes under another gen than it started ignores its outcome.
	gen       uint64
	buf       *replay.Buffer
	wpos      uint64 // next offset streamOut writes to st
	writing   bool   // streamOut is in a Write that reads the buffer from writeFrom
	writeFrom uint64
	tcpEOF    bool   // TCP side ended: FIN after the last byte
	finSent   bool   // FIN written on the current stream
	finAcked  bool   // the peer read our FIN
	inRead    bool   // streamIn is in a Read on the current stream
	eofGen    uint64 // gen on whose stream streamIn read the FIN
	received  uint64 // bytes handed to the TCP side
	ackPosted uint64 // received as of the last acknowledgement sent
	peerEOF   bool
	// peerEOFOut: the peer's FIN, after its last bytes, was passed on to
	// our TCP side. The flow may close its TCP connection only then:
	// peerEOF is set before streamIn writes the bytes read with the FIN.
	peerEOFOut bool
	ended      bool
	recovering bool // relocate or awaitResume runs
	recheck    bool // a path came up while relocate ran: it looks again
	// held: the destination has the flow (an acknowledgement came: a
	// destination that serves HTTP on the stream sends none, and its
	// stream cannot move); until then a move waits (moveWhenHeld).
	held         bool
	moveWhenHeld bool
	lostAt       time.Time
	lostPath     path
	pathT        *traffic
}

// rflowKey names a flow within a peer: IDs are picked by the side that
// opens a flow, and two clients may open flows to each other.
type rflowKey struct {
	id     uint64
	opener bool // we opened it
}

// Resumable flows, tunables.
const (
	// replayLimit bounds the bytes a flow keeps unacknowledged in each
	// direction: a reader of TCP waits beyond it. It also bounds a flow's
	// throughput to replayLimit per round trip plus acknowledgement delay.
	replayLimit = 4 << 20
	// resumeWait is how long a flow whose stream died waits for a new
	// one before its TCP connection is reset.
	resumeWait = 30 * time.Second
	// resumeAnswer bounds the wait for Resumed on a new stream.
	resumeAnswer = 3 * time.Second
	// ackEvery: an acknowledgement goes at once when this much arrived
	// since the last; smaller amounts wait up to ackDelay to be batched.
	ackEvery = 128 << 10
	ackDelay = 10 * time.Millisecond
	// maxWrite bounds one stream write from the replay buffer.
	maxWrite = 256 << 10
)

func newRFlow(p *peer, id uint64, opener bool, name string, tcp halfConn, base []*traffic) *rflow {
	f := &rflow{id: id, opener: opener, p: p, name: name, tcp: tcp, base: base, buf: replay.New(replayLimit)}
	f.cond = sync.NewCond(&f.mu)
	f.log = p.c.log.With("endpoint", name, "peer", p.id.Short(), "flow", id)
	f.ctx, f.cancel = context.WithCancel(p.ctx)
	return f
}

func (f *rflow) key() rflowKey { return rflowKey{f.id, f.opener} }

// carry proxies conn over st, a stream of qc for our endpoint name: as a
// resumable flow when flow is nonzero and qc negotiated them, else tied
// to st. base are the counters besides the endpoint's per-path one;
// opener says we are the source.
func (p *peer) carry(conn halfConn, st *quic.Stream, qc *quic.Conn, pa path, name string, flow uint64, opener bool, base ...*traffic) {
	if flow != 0 && resumable(qc) {
		newRFlow(p, flow, opener, name, conn, base).run(st, qc, pa)
		return
	}
	proxy(conn, st, &p.c.traffic, append(base, p.byPath.get(pathKey{name, opener, pa}))...)
}

// run carries the flow over st and its successors until it ends, and
// waits for every goroutine of the flow.
func (f *rflow) run(st *quic.Stream, conn *quic.Conn, pa path) {
	if !f.p.addFlow(f) {
		abort(st, wire.StreamAborted)
		_ = f.tcp.Close()
		f.cancel()
		return
	}
	defer f.p.removeFlow(f)
	for _, t := range f.base {
		t.active.Add(1)
		defer t.active.Add(-1)
	}
	f.mu.Lock()
	f.attachLocked(st, conn, pa, 0)
	f.mu.Unlock()
	if !f.opener {
		// Tell the source we hold the flow: it may move it from now on.
		f.p.postAck(conn, wire.FlowAck{Flow: f.id, Opener: true}, true)
	}
	stop := context.AfterFunc(f.ctx, func() { f.abort("client stopping") })
	f.wg.Go(f.tcpIn)
	f.wg.Go(f.streamOut)
	f.wg.Go(f.streamIn)
	f.wg.Wait()
	stop()
	f.cancel()
	f.mu.Lock()
	f.pathT.active.Add(-1)
	f.buf.Free()
	f.mu.Unlock()
}

// attachLocked makes st the flow's stream; the peer has peerReceived
// bytes of ours, so sending goes on from there.
func (f *rflow) attachLocked(st *quic.Stream, conn *quic.Conn, pa path, peerReceived uint64) {
	f.st, f.conn, f.pa = st, conn, pa
	f.gen++
	f.wpos = peerReceived
	f.finSent = false
	t := f.p.byPath.get(pathKey{f.name, f.opener, pa}) // this endpoint's, on the new path
	if f.pathT != t {
		if f.pathT != nil {
			f.pathT.active.Add(-1)
		}
		t.active.Add(1)
		f.pathT = t
	}
	f.cond.Broadcast()
}

// detachLocked drops the current stream (if gen is still current): its
// bytes in flight are resent on the next. The source starts looking for a
// new stream, the destination waits for one.
func (f *rflow) detachLocked(gen uint64, why string) {
	if f.st == nil || gen != f.gen || f.ended {
		return
	}
	old := f.st
	f.st, f.conn = nil, nil
	f.gen++
	f.lostAt, f.lostPath = time.Now(), f.pa
	old.CancelRead(wire.StreamMoved)
	old.CancelWrite(wire.StreamMoved)
	f.cond.Broadcast()
	f.log.Debug("flow lost its stream", "path", f.pa.String(), "why", why)
	if f.recovering {
		return
	}
	f.recovering = true
	if f.opener {
		f.wg.Go(func() { f.relocate(nil, pathNone) })
	} else {
		f.wg.Go(f.awaitResume)
	}
}

// failLocked handles err from an operation on the stream of gen: a reset
// by the peer other than StreamMoved ends the flow (the peer's TCP side
// failed), as do the end of our socket and the peer's shutdown; anything
// else (the connection died, the path went) detaches.
func (f *rflow) failLocked(gen uint64, err error) {
	if gen != f.gen {
		return
	}
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode != wire.StreamMoved {
		f.abortLocked("peer aborted the flow")
		return
	}
	var ae *quic.ApplicationError
	if errors.Is(err, quic.ErrTransportClosed) ||
		errors.As(err, &ae) && (ae.ErrorCode == wire.ConnShutdown || ae.ErrorCode == wire.ConnUnauthorized) {
		f.abortLocked(err.Error())
		return
	}
	f.detachLocked(gen, err.Error())
}

// abort ends the flow with a reset on both sides.
func (f *rflow) abort(why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.abortLocked(why)
}

func (f *rflow) abortLocked(why string) {
	if f.ended {
		return
	}
	f.ended = true
	if f.st != nil {
		f.st.CancelRead(wire.StreamAborted)
		f.st.CancelWrite(wire.StreamAborted)
	}
	if t, ok := f.tcp.(*net.TCPConn); ok {
		_ = t.SetLinger(0)
	}
	_ = f.tcp.Close()
	f.cancel()
	f.cond.Broadcast()
	f.log.Debug("flow aborted", "why", why)
}

// finishLocked ends the flow once both directions are done: our FIN was
// read by the peer, and we read the peer's.
func (f *rflow) finishLocked() {
	if f.ended || !f.tcpEOF || !f.finAcked || !f.peerEOFOut {
		return
	}
	f.ended = true
	_ = f.tcp.Close()
	f.cancel()
	f.cond.Broadcast()
}

// tcpIn reads the TCP side into the replay buffer.
func (f *rflow) tcpIn() {
	for {
		f.mu.Lock()
		var space []byte
		for !f.ended {
			if space = f.buf.Space(); space != nil {
				break
			}
			f.cond.Wait()
		}
		if f.ended {
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		n, err := f.tcp.Read(space)
		f.mu.Lock()
		if n > 0 {
			f.buf.Commit(n)
			f.count(n, true)
			f.cond.Broadcast()
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				f.tcpEOF = true
				f.cond.Broadcast()
			} else {
				f.abortLocked("tcp read: " + err.Error())
			}
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
	}
}

// count adds n bytes to every counter of the flow; out is TCP → peer.
// Called with f.mu held (pathT changes under it).
func (f *rflow) count(n int, out bool) {
	add := func(t *traffic) {
		if out {
			t.out.Add(int64(n))
		} else {
			t.in.Add(int64(n))
		}
	}
	// Not append(f.base, f.pathT): that would allocate on every read.
	for _, t := range f.base {
		add(t)
	}
	add(f.pathT)
	f.p.c.traffic.moved()
}

// streamOut writes the replay buffer to the current stream from wpos on,
// and the FIN after the last byte.
func (f *rflow) streamOut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		for !f.ended && (f.st == nil || (f.wpos == f.buf.End() && (!f.tcpEOF || f.finSent))) {
			f.cond.Wait()
		}
		if f.ended {
			return
		}
		st, gen := f.st, f.gen
		if f.wpos < f.buf.End() {
			from := f.wpos
			b := f.buf.Slice(from, maxWrite)
			f.writing, f.writeFrom = true, from
			f.mu.Unlock()
			n, err := st.Write(b)
			f.mu.Lock()
			f.writing = false
			if gen == f.gen {
				f.wpos = from + uint64(n)
				if err != nil {
					f.failLocked(gen, err)
				}
			}
			f.buf.Release(f.buf.End())
			continue
		}
		f.finSent = true
		if err := st.Close(); err != nil {
			f.failLocked(gen, err)
		}
	}
}

// streamIn copies the current stream to the TCP side, counting what it
// hands over: that count is what a resume reports.
func (f *rflow) streamIn() {
	rb := bufpool.NewReader()
	defer rb.Release()
	for {
		f.mu.Lock()
		for !f.ended && (f.st == nil || f.eofGen == f.gen) {
			f.cond.Wait()
		}
		if f.ended {
			f.mu.Unlock()
			return
		}
		st, gen := f.st, f.gen
		f.inRead = true
		f.mu.Unlock()

		buf := rb.Buf()
		n, err := st.Read(buf)

		f.mu.Lock()
		f.inRead = false
		f.cond.Broadcast()
		if n > 0 && f.peerEOF {
			f.abortLocked("bytes after the peer's FIN")
			f.mu.Unlock()
			return
		}
		f.received += uint64(n)
		if n > 0 {
			f.count(n, false)
		}
		closeWrite := false
		switch {
		case errors.Is(err, io.EOF) && gen == f.gen:
			f.eofGen = gen
			closeWrite = !f.peerEOF
			f.peerEOF = true
		case err != nil && !errors.Is(err, io.EOF):
			f.failLocked(gen, err)
		}
		conn, received, fin := f.conn, f.received, f.peerEOF
		urgent := fin || received-f.ackPosted >= ackEvery
		if conn != nil && received > f.ackPosted || closeWrite {
			f.ackPosted = received
		} else {
			conn = nil
		}
		f.mu.Unlock()

		if n > 0 {
			if testHookStreamIn != nil {
				testHookStreamIn(f)
			}
			if _, werr := f.tcp.Write(buf[:n]); werr != nil {
				f.abort("tcp write: " + werr.Error())
				return
			}
			rb.Read(n)
		}
		if closeWrite {
			_ = f.tcp.CloseWrite()
		}
		if conn != nil {
			f.p.postAck(conn, wire.FlowAck{Flow: f.id, Received: received, FIN: fin, Opener: !f.opener}, urgent)
		}
		if closeWrite {
			f.mu.Lock()
			f.peerEOFOut = true
			f.finishLocked()
			f.mu.Unlock()
		}
	}
}

// acked takes the peer's acknowledgement.
func (f *rflow) acked(a wire.FlowAck) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return
	}
	f.heldLocked()
	if err := f.buf.Ack(a.Received); err != nil {
		f.abortLocked("peer acknowledged " + err.Error())
		return
	}
	if a.FIN {
		if !f.tcpEOF || a.Received != f.buf.End() {
			f.abortLocked("peer acknowledged a FIN not sent")
			return
		}
		f.finAcked = true
	}
	if !f.writing {
		f.buf.Release(f.buf.End())
	} else {
		f.buf.Release(f.writeFrom)
	}
	f.cond.Broadcast()
	f.finishLocked()
}

// quiesce detaches the current stream, if any, and waits until streamIn
// is out of its Read: the count it returns is final for the resume.
func (f *rflow) quiesce() (received uint64, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st != nil {
		f.detachLocked(f.gen, "moving")
	}
	for f.inRead && !f.ended {
		f.cond.Wait()
	}
	return f.received, !f.ended
}

// attachResumed attaches st after a resume handshake.
func (f *rflow) attachResumed(st *quic.Stream, conn *quic.Conn, pa path, peerReceived uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return errFlowEnded
	}
	if peerReceived < f.buf.Acked() || peerReceived > f.buf.End() {
		f.abortLocked("resume from an offset we cannot send from")
		return errBadResume
	}
	_ = f.buf.Ack(peerReceived)
	if f.st != nil { // a resume raced ours: the newest wins
		f.detachLocked(f.gen, "replaced")
	}
	old, stall := f.lostPath, time.Since(f.lostAt)
	f.attachLocked(st, conn, pa, peerReceived)
	f.heldLocked() // it answered our Resume
	kind := "destination"
	if f.opener {
		kind = "source"
	}
	f.p.c.flowMoves.note(FlowMove{Kind: kind, Endpoint: f.name, Peer: f.p.id.String(), Old: old.String(), New: pa.String()}, stall)
	f.log.Info("flow moved", msgid.FlowMoved.Attr(), "old_path", old.String(), "new_path", pa.String(),
		"stall", stall.Round(time.Millisecond).String())
	return nil
}

// testHookStreamIn, when set by a test, runs in streamIn between reading
// bytes from the stream and writing them to TCP.
var testHookStreamIn func(*rflow)

var (
	errFlowEnded = errors.New("flow ended")
	errBadResume = errors.New("resume offset outside what is kept")
)

// awaitResume ends a destination's flow whose stream died if the source
// does not resume it within resumeWait.
func (f *rflow) awaitResume() {
	deadline := time.Now().Add(resumeWait)
	t := time.AfterFunc(resumeWait, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer t.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.st == nil && !f.ended && time.Now().Before(deadline) {
		f.cond.Wait()
	}
	if f.st == nil {
		f.abortLocked("no resume within " + resumeWait.String())
	}
	f.recovering = false
}

// moveTo asks the flow to go over conn (a better path came up); the
// source only.
func (f *rflow) moveTo(conn *quic.Conn, pa path) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.opener || f.ended || f.conn == conn {
		return
	}
	if !f.held {
		// The destination may not have read our Connect yet: a Resume
		// overtaking it would find no flow, and dropping the stream would
		// lose the Connect. The move waits until the flow is held.
		f.moveWhenHeld = true
		return
	}
	if f.recovering {
		f.recheck = true
		return
	}
	f.recovering = true
	f.wg.Go(func() { f.relocate(conn, pa) })
}

// heldLocked notes that the destination holds the flow, and starts a
// move that waited for it.
func (f *rflow) heldLocked() {
	if f.held || !f.opener {
		return
	}
	f.held = true
	if !f.moveWhenHeld || f.ended {
		return
	}
	f.moveWhenHeld = false
	if f.recovering {
		f.recheck = true
		return
	}
	f.recovering = true
	f.wg.Go(func() { f.relocate(nil, pathNone) })
}

// flowOn reports whether the flow currently travels over conn.
func (f *rflow) flowOn(conn *quic.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conn == conn
}

// currentPath is the flow's path, pathNone while detached.
func (f *rflow) currentPath() path {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st == nil {
		return pathNone
	}
	return f.pa
}
