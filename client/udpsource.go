package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/connetd/connetd/wire"
)

// udpSource carries the datagrams of a udp source: each client address
// is a flow, held by one stream to a destination peer, whose datagrams go
// as QUIC datagrams tagged with that stream's ID.
type udpSource struct {
	c   *Client
	s   *source
	pc  *net.UDPConn
	cfg UDPConfig

	mu    sync.Mutex
	flows map[netip.AddrPort]*srcFlow
}

// srcFlow is one client address of a udp source.
type srcFlow struct {
	u    *udpSource
	from netip.AddrPort
	idle idleClock
	lost chan struct{} // sending on the attachment failed: find a path again

	mu      sync.Mutex
	att     *flowAttachment // nil while (re)attaching
	pending heldDatagrams   // datagrams that came while att was nil
	ended   bool
}

// flowAttachment is a flow's stream on one peer connection.
type flowAttachment struct {
	p      *peer
	pa     path
	conn   *quic.Conn
	st     *quic.Stream
	id     quic.StreamID
	mux    *flowMux
	byPath *traffic
	done   chan struct{} // the stream ended (read side), its handler removed
	err    error         // why it ended; set before done is closed
}

// serve reads the source socket until ctx ends, and waits for its flows.
func (u *udpSource) serve(ctx context.Context) {
	var flows sync.WaitGroup
	defer flows.Wait()
	stop := context.AfterFunc(ctx, func() { _ = u.pc.Close() })
	defer stop()
	// Datagrams are read in batches (recvmmsg): one system call for up
	// to sourceBatch of them, handed to quic-go back to back so that it
	// packs and sends them in batches too.
	rd := batchReader(u.pc)
	ms := make([]ipv4.Message, sourceBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, maxUDPPayload+1)}
	}
	scratch := make([]byte, 0, wire.MaxFlowHeader+maxUDPPayload)
	for {
		n, err := rd.ReadBatch(ms, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			u.c.log.Warn("udp source read failed", "endpoint", u.s.name, "err", err)
			time.Sleep(10 * time.Millisecond) // an error that repeats must not spin
			continue
		}
		for _, m := range ms[:n] {
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			ap := ua.AddrPort()
			from := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			f := u.flow(ctx, from, &flows)
			if f == nil {
				continue
			}
			scratch = f.send(scratch, m.Buffers[0][:m.N])
		}
	}
}

// sourceBatch is how many datagrams a udp source reads per system call.
const sourceBatch = 16

// batchReader reads pc with recvmmsg, through the x/net package of its
// address family.
func batchReader(pc *net.UDPConn) interface {
	ReadBatch([]ipv4.Message, int) (int, error)
} {
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok && ua.IP.To4() == nil {
		return ipv6.NewPacketConn(pc)
	}
	return ipv4.NewPacketConn(pc)
}

// flow finds or starts from's flow; nil if the cap refuses a new one.
func (u *udpSource) flow(ctx context.Context, from netip.AddrPort, flows *sync.WaitGroup) *srcFlow {
	u.mu.Lock()
	defer u.mu.Unlock()
	if f := u.flows[from]; f != nil {
		return f
	}
	if len(u.flows) >= u.cfg.MaxFlows {
		if u.s.udp.refused.Add(1); u.s.udp.warned.allow(udpWarnEvery) {
			u.c.log.Warn("udp flow refused: the source holds its maximum of flows", "endpoint", u.s.name,
				"from", from.String(), "max_flows", u.cfg.MaxFlows)
		}
		return nil
	}
	f := &srcFlow{u: u, from: from, lost: make(chan struct{}, 1)}
	f.idle.touch()
	u.flows[from] = f
	u.s.udp.flows.Add(1)
	u.s.traffic.active.Add(1)
	flows.Go(func() { f.run(ctx) })
	return f
}

// send forwards one datagram from the flow's client, or holds it while
// the flow has no stream. scratch is the caller's buffer, returned for
// reuse.
func (f *srcFlow) send(scratch, payload []byte) []byte {
	f.idle.touch()
	f.mu.Lock()
	a := f.att
	if a == nil {
		if f.ended || !f.pending.add(payload) {
			f.u.s.udp.dropped.Add(1)
		}
		f.mu.Unlock()
		return scratch
	}
	f.mu.Unlock()
	scratch = wire.AppendFlowDatagram(scratch[:0], uint64(a.id), payload)
	f.transmit(a, scratch, len(payload))
	return scratch
}

// transmit sends one datagram on a, counting what it could not.
func (f *srcFlow) transmit(a *flowAttachment, dg []byte, n int) {
	err := a.conn.SendDatagram(dg)
	var tooLarge *quic.DatagramTooLargeError
	switch {
	case err == nil:
		f.u.c.countOut(n, &f.u.s.traffic, &a.p.traffic, a.byPath)
	case errors.As(err, &tooLarge):
		f.u.s.udp.oversize.Add(1)
	default:
		if a.conn.Context().Err() == nil || !f.resend(a, dg[len(dg)-n:]) {
			f.u.s.udp.dropped.Add(1)
		}
		select {
		case f.lost <- struct{}{}:
		default:
		}
	}
}

// resend takes a datagram that a could not send because its connection
// is gone: it waits for the flow's next attachment (or goes on the one
// that already replaced a), so that a path change loses nothing sent in
// the moment the old path died. false if it is dropped after all.
func (f *srcFlow) resend(a *flowAttachment, payload []byte) bool {
	f.mu.Lock()
	if f.att == a {
		f.att = nil
	}
	next := f.att
	if next == nil {
		held := !f.ended && f.pending.add(payload)
		f.mu.Unlock()
		return held
	}
	f.mu.Unlock()
	f.transmit(next, wire.AppendFlowDatagram(nil, uint64(next.id), payload), len(payload))
	return true
}

// deliver writes a datagram from the destination to the flow's client.
func (f *srcFlow) deliver(a *flowAttachment, payload []byte) {
	f.idle.touch()
	// Counted before the write, which the client may answer first.
	f.u.c.countIn(len(payload), &f.u.s.traffic, &a.p.traffic, a.byPath)
	if _, err := f.u.pc.WriteToUDPAddrPort(payload, f.from); err != nil {
		f.u.s.udp.dropped.Add(1)
	}
}

// run keeps the flow attached to the best path until it idles out, the
// destination ends it, or ctx ends; then it waits for its streams.
func (f *srcFlow) run(ctx context.Context) {
	u := f.u
	log := u.c.log.With("endpoint", u.s.name, "from", f.from.String())
	var streams sync.WaitGroup
	defer func() {
		u.mu.Lock()
		delete(u.flows, f.from)
		u.mu.Unlock()
		f.mu.Lock()
		u.s.udp.dropped.Add(int64(len(f.pending.take()))) // held for a flow that never got a path
		f.ended = true
		a := f.att
		f.att = nil
		f.mu.Unlock()
		if a != nil {
			_ = a.st.Close() // FIN: the destination ends the flow too
		}
		u.s.udp.flows.Add(-1)
		u.s.traffic.active.Add(-1)
		streams.Wait()
	}()
	idle := time.NewTimer(u.cfg.IdleTimeout)
	defer idle.Stop()
	var cur *flowAttachment
	for {
		if cur == nil {
			a, err := f.attach(ctx, &streams)
			if err != nil {
				if ctx.Err() == nil && u.s.udp.warned.allow(udpWarnEvery) {
					log.Warn("udp flow not carried", "err", err)
				}
				return
			}
			log.Debug("udp flow routed", "peer", a.p.id.Short(), "route", a.pa.String())
			cur = a
			f.use(a)
		}
		changed := u.c.changed.C()
		select {
		case <-ctx.Done():
			return
		case <-idle.C:
			if left := f.idle.remaining(u.cfg.IdleTimeout); left > 0 {
				idle.Reset(left)
				continue
			}
			log.Debug("udp flow idle: closed")
			return
		case <-cur.done:
			if cur.conn.Context().Err() == nil {
				// The destination ended the flow (its idle timeout, or
				// it went away); the next datagram starts a new one.
				log.Debug("udp flow ended by the destination", "err", cur.err)
				return
			}
			f.detach(cur)
			cur = nil // the path died: find another
		case <-f.lost:
			if cur.conn.Context().Err() != nil {
				f.detach(cur)
				cur = nil
			}
		case <-changed:
			// A better path to the same destination: another one would
			// give the service a new client address mid-flow.
			if conn, pa, _ := cur.p.pathFor(u.s.name, nil); conn != nil && conn != cur.conn && pa < cur.pa {
				if next, err := f.open(cur.p, pa, conn, &streams); err == nil {
					old := cur
					cur = next
					f.use(next)
					log.Debug("udp flow moved", "from_route", old.pa.String(), "to_route", next.pa.String())
					_ = old.st.Close() // the destination now sends on next
				}
			}
		}
	}
}

// use makes a the flow's attachment and sends what waited for one.
func (f *srcFlow) use(a *flowAttachment) {
	f.mu.Lock()
	f.att = a
	pending := f.pending.take()
	f.mu.Unlock()
	for _, b := range pending {
		f.transmit(a, wire.AppendFlowDatagram(nil, uint64(a.id), b), len(b))
	}
}

// detach forgets a, if it is the flow's attachment: datagrams wait for
// the next one.
func (f *srcFlow) detach(a *flowAttachment) {
	f.mu.Lock()
	if f.att == a {
		f.att = nil
	}
	f.mu.Unlock()
}

// errNoDatagrams is a peer that cannot carry UDP: a connetd from before
// UDP flows.
var errNoDatagrams = errors.New("the destination's connetd does not support QUIC datagrams (too old for udp)")

// errNoPath is a flow's failure to find a path within connectWait.
var errNoPath = errors.New("no usable path to a destination")

// attach opens a stream for the flow on the best path, waiting up to
// connectWait for one, and returns once the destination is ready.
func (f *srcFlow) attach(ctx context.Context, streams *sync.WaitGroup) (*flowAttachment, error) {
	u := f.u
	deadline := time.NewTimer(connectWait)
	defer deadline.Stop()
	for {
		changed := u.c.changed.C()
		p, pa, conn := u.c.pick(u.s.name)
		if conn != nil {
			a, err := f.open(p, pa, conn, streams)
			if err == nil {
				return a, nil
			}
			if conn.Context().Err() == nil {
				return nil, err // the destination refused: no retry
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			return nil, errNoPath
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// open sets up the flow on conn: a stream carrying the Connect, whose ID
// tags the flow's datagrams; the destination answers FlowReady.
func (f *srcFlow) open(p *peer, pa path, conn *quic.Conn, streams *sync.WaitGroup) (*flowAttachment, error) {
	u := f.u
	if !conn.ConnectionState().SupportsDatagrams.Remote {
		return nil, errNoDatagrams
	}
	mux := p.flowMux(conn)
	if mux == nil {
		return nil, errors.New("peer closing")
	}
	st, err := conn.OpenStream()
	if err != nil {
		return nil, err
	}
	a := &flowAttachment{p: p, pa: pa, conn: conn, st: st, id: st.StreamID(), mux: mux,
		byPath: p.byPath.get(pathKey{u.s.name, true, pa}), done: make(chan struct{})}
	mux.add(a.id, func(b []byte) { f.deliver(a, b) })
	fail := func(err error) (*flowAttachment, error) {
		mux.remove(a.id)
		abort(st, wire.StreamAborted)
		return nil, err
	}
	if err := wire.Write(st, &wire.Connect{Endpoint: u.s.name, From: f.from.String(), Proto: wire.ProtoUDP}); err != nil {
		return fail(err)
	}
	_ = st.SetReadDeadline(time.Now().Add(flowSetup))
	if _, err := wire.Read(st, wire.FlowStream); err != nil {
		return fail(flowRefusal(err))
	}
	_ = st.SetReadDeadline(time.Time{})
	streams.Go(func() { a.watch() })
	return a, nil
}

// watch reads the stream until it ends (the destination sends nothing
// after FlowReady) and then removes the flow's handler from the mux.
func (a *flowAttachment) watch() {
	_, err := io.Copy(io.Discard, a.st)
	a.mux.removeLater(a.p, a.id)
	_ = a.st.Close() // our side too, if the destination ended first
	a.err = err
	close(a.done)
}

// flowRefusal names a destination's refusal of a flow by its code.
func flowRefusal(err error) error {
	var se *quic.StreamError
	if !errors.As(err, &se) {
		return err
	}
	switch se.ErrorCode {
	case wire.StreamWrongProtocol:
		return errors.New("the destination does not carry udp under this name")
	case wire.StreamFlowLimit:
		return errors.New("the destination holds its maximum of flows for this endpoint")
	case wire.StreamUnknownEndpoint:
		return errors.New("the destination does not offer this endpoint to this client")
	case wire.StreamDialFailed:
		return errors.New("the destination could not open a socket to its service")
	}
	return err
}
