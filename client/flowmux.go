package client

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/wire"
)

// flowMux hands the datagrams arriving on one peer connection to the UDP
// flows on it, by the ID of the stream that holds each flow. The peer owns
// it and its receive loop, which ends with the connection or the peer.
type flowMux struct {
	conn *quic.Conn

	mu    sync.Mutex
	flows map[quic.StreamID]func(payload []byte)
}

// muxDrops counts datagrams a client's muxes could not deliver.
type muxDrops struct {
	unknownFlow atomic.Int64 // no flow of that ID (ended, or never set up)
	malformed   atomic.Int64 // too short to name a flow
	queueFull   atomic.Int64 // arrived faster than they could be delivered
}

// muxQueue is how many received datagrams wait for delivery beyond
// quic-go's own receive queue (128, which drops the rest): a burst of
// replies from a hundred flows at once must not be lost while the
// dispatcher writes to sockets.
const muxQueue = 2048

// flowMux returns conn's mux, starting its receive loop on first use;
// nil if the peer is closing.
func (p *peer) flowMux(conn *quic.Conn) *flowMux {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.muxes[conn]; m != nil {
		return m
	}
	if p.closed {
		return nil
	}
	m := &flowMux{conn: conn, flows: map[quic.StreamID]func([]byte){}}
	if p.muxes == nil {
		p.muxes = map[*quic.Conn]*flowMux{}
	}
	p.muxes[conn] = m
	queue := make(chan []byte, muxQueue)
	p.wg.Go(func() {
		m.receive(p, queue)
		p.mu.Lock()
		delete(p.muxes, conn)
		p.mu.Unlock()
	})
	p.wg.Go(func() { m.dispatch(p.c, queue) })
	return m
}

// receive moves datagrams from quic-go's queue to ours until the
// connection or the peer ends, then closes ours.
func (m *flowMux) receive(p *peer, queue chan<- []byte) {
	defer close(queue)
	for {
		b, err := m.conn.ReceiveDatagram(p.ctx)
		if err != nil {
			return
		}
		select {
		case queue <- b:
		default:
			p.c.muxDrops.queueFull.Add(1)
		}
	}
}

// dispatch hands each datagram to its flow.
func (m *flowMux) dispatch(c *Client, queue <-chan []byte) {
	for b := range queue {
		id, payload, err := wire.ParseFlowDatagram(b)
		if err != nil {
			c.muxDrops.malformed.Add(1)
			continue
		}
		m.mu.Lock()
		deliver := m.flows[quic.StreamID(id)]
		m.mu.Unlock()
		if deliver == nil {
			c.muxDrops.unknownFlow.Add(1)
			continue
		}
		deliver(payload)
	}
}

func (m *flowMux) add(id quic.StreamID, deliver func([]byte)) {
	m.mu.Lock()
	m.flows[id] = deliver
	m.mu.Unlock()
}

func (m *flowMux) remove(id quic.StreamID) {
	m.mu.Lock()
	delete(m.flows, id)
	m.mu.Unlock()
}

// muxGrace is how long a flow's handler outlives its stream. Datagrams
// sent just before the stream closed travel with its FIN but wait in our
// queue while the FIN is handled at once: a flow moved to another path
// must still get them.
const muxGrace = time.Second

// removeLater removes id's handler after muxGrace, or when the peer ends.
func (m *flowMux) removeLater(p *peer, id quic.StreamID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed { // the peer's goroutines are being waited for: add none
		m.remove(id)
		return
	}
	p.wg.Go(func() {
		t := time.NewTimer(muxGrace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.ctx.Done():
		}
		m.remove(id)
	})
}

// oversizeProbe is larger than any datagram a QUIC packet can carry:
// SendDatagram refuses it without queueing anything and says the limit.
var oversizeProbe = make([]byte, 1<<16)

// maxFlowPayload is the largest UDP payload a flow on conn can carry
// now: the connection's datagram limit (which grows as path MTU discovery
// finds room) less the flow header. 0 when the connection has no
// datagram support.
func maxFlowPayload(conn *quic.Conn) int {
	var tooLarge *quic.DatagramTooLargeError
	if err := conn.SendDatagram(oversizeProbe); errors.As(err, &tooLarge) {
		return max(0, int(tooLarge.MaxDatagramPayloadSize)-wire.FlowHeader)
	}
	return 0
}
