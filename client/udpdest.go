package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// flowKey names a flow at the destination. It outlives the streams that
// carry it: a flow the source moves to another path keeps its socket, so
// the service sees one client address throughout.
type flowKey struct {
	peer     identity.ID
	endpoint string
	from     string
}

// flowTable holds the destination side of every UDP flow of a client.
type flowTable struct {
	mu          sync.Mutex
	flows       map[flowKey]*dstFlow
	perEndpoint map[string]int
}

// dstFlow is one flow at the destination: a socket connected to the
// service, and the stream currently carrying the flow.
type dstFlow struct {
	key  flowKey
	d    *destination
	sock *net.UDPConn
	idle idleClock

	mu     sync.Mutex
	att    *flowAttachment // nil while the source finds another path
	closed bool
	// held are the service's datagrams that came while the flow had no
	// live path, sent when the source comes back within flowHoldMax.
	held heldDatagrams
}

// flowHoldMax bounds how long a destination holds a flow's datagrams for
// a source that is finding another path: later they are dropped, as the
// path's loss would have.
const flowHoldMax = 5 * time.Second

// flowReadBuf holds any datagram a QUIC packet can carry (quic-go's
// packets are at most 1452 bytes); a larger one from the service is
// detected (MSG_TRUNC) and dropped as oversize, never sent cut.
const flowReadBuf = 2048

// errFlowLimit refuses a flow past the endpoint's cap.
var errFlowLimit = errors.New("flow limit reached")

// attach finds key's flow or makes one (a socket to d's service, and its
// reader, owned by p), and makes a its attachment.
func (t *flowTable) attach(key flowKey, d *destination, p *peer, a *flowAttachment) (*dstFlow, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.flows[key]
	if f == nil {
		if t.perEndpoint[key.endpoint] >= d.udpCfg.MaxFlows {
			d.udp.refused.Add(1)
			return nil, errFlowLimit
		}
		raddr, err := net.ResolveUDPAddr("udp", d.addr)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", d.addr, err)
		}
		sock, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", d.addr, err)
		}
		f = &dstFlow{key: key, d: d, sock: sock}
		f.idle.touch()
		if t.flows == nil {
			t.flows, t.perEndpoint = map[flowKey]*dstFlow{}, map[string]int{}
		}
		t.flows[key] = f
		t.perEndpoint[key.endpoint]++
		d.udp.flows.Add(1)
		d.traffic.active.Add(1)
		p.wg.Go(func() { f.read(t, p) })
	}
	f.mu.Lock()
	f.att = a
	f.mu.Unlock()
	return f, nil
}

// remove forgets f and closes its socket (its reader then ends).
func (t *flowTable) remove(f *dstFlow) {
	t.mu.Lock()
	if t.flows[f.key] == f {
		delete(t.flows, f.key)
		t.perEndpoint[f.key.endpoint]--
		if t.perEndpoint[f.key.endpoint] == 0 {
			delete(t.perEndpoint, f.key.endpoint)
		}
		f.d.udp.flows.Add(-1)
		f.d.traffic.active.Add(-1)
	}
	t.mu.Unlock()
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	_ = f.sock.Close()
}

// closeEndpoint ends every flow of endpoint name (the destination was
// removed).
func (t *flowTable) closeEndpoint(name string) {
	t.mu.Lock()
	var ends []*dstFlow
	for k, f := range t.flows {
		if k.endpoint == name {
			ends = append(ends, f)
		}
	}
	t.mu.Unlock()
	for _, f := range ends {
		f.end(t, wire.StreamUnknownEndpoint)
	}
}

// end closes the flow and tells the source, on its current stream.
func (f *dstFlow) end(t *flowTable, code quic.StreamErrorCode) {
	f.mu.Lock()
	a := f.att
	f.att = nil
	f.mu.Unlock()
	t.remove(f)
	if a != nil {
		a.st.CancelRead(code)
		_ = a.st.Close()
	}
}

// detach forgets a if it is still the flow's attachment; it reports
// whether it was.
func (f *dstFlow) detach(a *flowAttachment) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.att != a {
		return false
	}
	f.att = nil
	return true
}

// deliver writes a datagram from the source to the service.
func (f *dstFlow) deliver(c *Client, a *flowAttachment, payload []byte) {
	f.idle.touch()
	// Counted before the write: the service's reply may travel all the
	// way back before Write returns here.
	c.countIn(len(payload), &f.d.traffic, &a.p.traffic, a.byPath)
	if _, err := f.sock.Write(payload); err != nil {
		f.d.udp.dropped.Add(1)
	}
}

// read forwards the service's datagrams to the source until the flow is
// idle for its timeout or closed.
func (f *dstFlow) read(t *flowTable, p *peer) {
	stop := context.AfterFunc(p.ctx, func() { _ = f.sock.Close() })
	defer stop()
	buf := make([]byte, flowReadBuf)
	var dg []byte
	idle := f.d.udpCfg.IdleTimeout
	for {
		_ = f.sock.SetReadDeadline(time.Now().Add(f.idle.remaining(idle)))
		n, _, flags, _, err := f.sock.ReadMsgUDP(buf, nil)
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				if f.idle.remaining(idle) <= 0 {
					p.c.log.Debug("udp flow idle: closed", "endpoint", f.key.endpoint, "peer", p.id.Short(), "from", f.key.from)
					f.end(t, wire.StreamFlowIdle)
					return
				}
			case errors.Is(err, syscall.ECONNREFUSED):
				// The service is not listening (ICMP port unreachable):
				// like a UDP client, keep the flow and go on.
			default:
				f.end(t, wire.StreamAborted)
				return
			}
			continue
		}
		f.idle.touch()
		if flags&syscall.MSG_TRUNC != 0 {
			f.d.udp.oversize.Add(1)
			continue
		}
		f.mu.Lock()
		a := f.att
		f.mu.Unlock()
		if a == nil {
			if !f.hold(nil, buf[:n]) {
				f.d.udp.dropped.Add(1)
			}
			continue
		}
		dg = f.send(p.c, a, dg, buf[:n])
	}
}

// send sends one datagram of the service's on a, or holds it if a's
// connection is gone; dg is the caller's buffer, returned for reuse.
func (f *dstFlow) send(c *Client, a *flowAttachment, dg, payload []byte) []byte {
	dg = wire.AppendFlowDatagram(dg[:0], uint64(a.id), payload)
	err := a.conn.SendDatagram(dg)
	var tooLarge *quic.DatagramTooLargeError
	switch {
	case err == nil:
		c.countOut(len(payload), &f.d.traffic, &a.p.traffic, a.byPath)
	case errors.As(err, &tooLarge):
		f.d.udp.oversize.Add(1)
	case a.conn.Context().Err() != nil && f.hold(a, payload):
	default:
		f.d.udp.dropped.Add(1)
	}
	return dg
}

// hold keeps a datagram for the flow's next attachment while it has none
// (a, when given, is the attachment whose connection just died); false
// if it is dropped: the queue is full or the flow closed.
func (f *dstFlow) hold(a *flowAttachment, payload []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a != nil && f.att == a {
		f.att = nil
	}
	return f.att == nil && !f.closed && f.held.add(payload)
}

// flush sends what was held for a, the flow's new attachment, unless it
// waited longer than flowHoldMax.
func (f *dstFlow) flush(c *Client, a *flowAttachment) {
	f.mu.Lock()
	stale := time.Since(f.held.since) > flowHoldMax
	held := f.held.take()
	f.mu.Unlock()
	if stale {
		f.d.udp.dropped.Add(int64(len(held)))
		return
	}
	var dg []byte
	for _, b := range held {
		dg = f.send(c, a, dg, b)
	}
}

// serveFlow sets up (or moves) the flow a source opened st for, answers
// FlowReady, and holds the stream until it ends: a source that ends the
// flow closes the stream; a connection that dies leaves the flow waiting
// for the source to come back on another path, until its idle timeout.
func (p *peer) serveFlow(conn *quic.Conn, st *quic.Stream, pa path, m *wire.Connect, d *destination) {
	c := p.c
	log := c.log.With("endpoint", m.Endpoint, "peer", p.id.Short(), "route", pa.String(), "from", m.From)
	mux := p.flowMux(conn)
	if mux == nil {
		abort(st, wire.StreamAborted)
		return
	}
	a := &flowAttachment{p: p, pa: pa, conn: conn, st: st, id: st.StreamID(), mux: mux,
		byPath: p.byPath.get(pathKey{m.Endpoint, false, pa})}
	f, err := c.udpFlows.attach(flowKey{p.id, m.Endpoint, m.From}, d, p, a)
	if err != nil {
		if errors.Is(err, errFlowLimit) {
			if d.udp.warned.allow(udpWarnEvery) {
				log.Warn("udp flow refused: the destination holds its maximum of flows", "max_flows", d.udpCfg.MaxFlows)
			}
			abort(st, wire.StreamFlowLimit)
			return
		}
		log.Warn("destination service unreachable", "addr", d.addr, "err", err)
		abort(st, wire.StreamDialFailed)
		return
	}
	mux.add(a.id, func(b []byte) { f.deliver(c, a, b) })
	defer mux.removeLater(p, a.id)
	if err := wire.Write(st, &wire.FlowReady{}); err != nil {
		f.detach(a)
		abort(st, wire.StreamAborted)
		return
	}
	log.Debug("udp flow routed")
	f.flush(c, a)
	_, _ = io.Copy(io.Discard, st)
	if f.detach(a) && conn.Context().Err() == nil {
		c.udpFlows.remove(f) // the source ended the flow
	}
	_ = st.Close()
}
