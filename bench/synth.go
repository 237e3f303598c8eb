package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

// synthClient is one client of the scale run: the control protocol only,
// no data plane. Its reader keeps draining the control stream, as a real
// client does, so that control never takes it for stuck.
type synthClient struct {
	idx  int
	node int // index of the control node it talks to
	id   *identity.Identity
	conn *quic.Conn
	st   *quic.Stream
	wmu  sync.Mutex // one writer at a time on st

	mu    sync.Mutex
	peers map[string]*peerState // by endpoint name, for the client's sources
}

// peerState is what the last peers message for one source endpoint said.
type peerState struct {
	n       int       // peers listed
	at      time.Time // when that message was read
	served  bool      // some message listed a peer
	changed chan struct{}
}

// synthFleet is every synthetic client and what their readers saw.
type synthFleet struct {
	clients []*synthClient
	// sourcesServed counts source endpoints that got a non-empty peers
	// message at least once: the clients' side of convergence.
	sourcesServed atomic.Int64
	// servedWant is the count at which the reader that reaches it stamps
	// servedAt: exact, where polling the nodes' status is seconds coarse
	// under load.
	servedWant atomic.Int64
	servedAt   atomic.Pointer[time.Time]
	errors     atomic.Int64 // error messages from control
	lost       atomic.Int64 // control streams that ended before the run did
	closing    atomic.Bool
	firstErr   atomic.Pointer[string]
}

func (f *synthFleet) noteErr(s string) { f.firstErr.CompareAndSwap(nil, &s) }

// synthTransports are the fleet's UDP sockets, on distinct loopback
// addresses: control admits at most 16 connections per address that have
// not yet shown their token (control/gate.go), and a real fleet comes from
// many addresses too.
func synthTransports(n int) ([]*quic.Transport, error) {
	var trs []*quic.Transport
	for i := range n {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 1, byte(1+i))})
		if err != nil {
			for _, t := range trs {
				t.Close()
				t.Conn.Close()
			}
			return nil, fmt.Errorf("client socket %d: %w", i, err)
		}
		trs = append(trs, &quic.Transport{Conn: u})
	}
	return trs, nil
}

func synthTLS(certFile string, id *identity.Identity) (*tls.Config, error) {
	c, err := clientTLS(certFile)
	if err != nil {
		return nil, err
	}
	c.Certificates = []tls.Certificate{id.Cert}
	c.NextProtos = []string{wire.ALPNClientControl}
	return c, nil
}

// connect dials control, says hello and, once welcomed, starts the reader.
func (c *synthClient) connect(ctx context.Context, f *synthFleet, tr *quic.Transport, addr *net.UDPAddr, tc *tls.Config, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx, addr, tc, quicconf.Control())
	if err != nil {
		return fmt.Errorf("client %d: dial %s: %w", c.idx, addr, err)
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		_ = conn.CloseWithError(0, "")
		return fmt.Errorf("client %d: open control stream: %w", c.idx, err)
	}
	if err := wire.Write(st, &wire.Hello{Token: token, Version: "bench"}); err != nil {
		_ = conn.CloseWithError(0, "")
		return fmt.Errorf("client %d: hello: %w", c.idx, err)
	}
	dl, _ := ctx.Deadline()
	_ = st.SetReadDeadline(dl)
	m, err := wire.Read(st, wire.ControlToClient)
	if err != nil {
		_ = conn.CloseWithError(0, "")
		return fmt.Errorf("client %d: read welcome: %w", c.idx, err)
	}
	if _, ok := m.(*wire.Welcome); !ok {
		_ = conn.CloseWithError(0, "")
		if e, ok := m.(*wire.Error); ok {
			return fmt.Errorf("client %d: %w", c.idx, e)
		}
		return fmt.Errorf("client %d: %s instead of welcome", c.idx, wire.Kind(m))
	}
	_ = st.SetReadDeadline(time.Time{})
	c.conn, c.st = conn, st
	go c.read(f)
	return nil
}

func (c *synthClient) read(f *synthFleet) {
	for {
		m, err := wire.Read(c.st, wire.ControlToClient)
		if err != nil {
			if !f.closing.Load() {
				f.lost.Add(1)
				f.noteErr(fmt.Sprintf("client %d (node %d): control stream ended: %v", c.idx, c.node, err))
			}
			return
		}
		at := time.Now()
		switch m := m.(type) {
		case *wire.Peers:
			if m.Role != restrict.RoleSource {
				continue
			}
			c.mu.Lock()
			p := c.peerLocked(m.Endpoint)
			if len(m.Peers) > 0 && !p.served {
				p.served = true
				if f.sourcesServed.Add(1) == f.servedWant.Load() {
					f.servedAt.Store(&at)
				}
			}
			p.n, p.at = len(m.Peers), at
			close(p.changed)
			p.changed = make(chan struct{})
			c.mu.Unlock()
		case *wire.Error:
			f.errors.Add(1)
			f.noteErr(fmt.Sprintf("client %d: %v", c.idx, m))
		}
	}
}

func (c *synthClient) peerLocked(name string) *peerState {
	p := c.peers[name]
	if p == nil {
		p = &peerState{changed: make(chan struct{})}
		c.peers[name] = p
	}
	return p
}

// waitPeers waits until the last peers message of source endpoint name
// satisfies ok, and returns when that message was read.
func (c *synthClient) waitPeers(ctx context.Context, name string, ok func(n int) bool, timeout time.Duration) (time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		c.mu.Lock()
		p := c.peerLocked(name)
		n, at, ch := p.n, p.at, p.changed
		c.mu.Unlock()
		if !at.IsZero() && ok(n) {
			return at, nil
		}
		select {
		case <-ch:
		case <-t.C:
			return time.Time{}, fmt.Errorf("source %q of client %d: %d peers after %v", name, c.idx, n, timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

func (c *synthClient) send(m wire.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.st == nil {
		return fmt.Errorf("client %d: not connected", c.idx)
	}
	// Generous: on a small machine the bench shares the CPU with three
	// control nodes and etcd, and a write waits for its connection's turn.
	_ = c.st.SetWriteDeadline(time.Now().Add(20 * time.Second))
	if err := wire.Write(c.st, m); err != nil {
		return fmt.Errorf("client %d: send %s: %w", c.idx, wire.Kind(m), err)
	}
	return nil
}

func (c *synthClient) close() {
	if c.conn != nil {
		_ = c.conn.CloseWithError(0, "bench done")
	}
}
