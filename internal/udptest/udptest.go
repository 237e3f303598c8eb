// Package udptest has the UDP service and the checked exchange that tests
// of UDP forwarding share: an echo server that notes each client address,
// and a windowed exchange that checks every reply by content.
package udptest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// Echo answers every datagram with itself, from one socket, and counts
// the client addresses it saw (one per flow the tunnel made).
type Echo struct {
	pc    *net.UDPConn
	mu    sync.Mutex
	peers map[string]int
}

// ListenEcho serves on addr ("127.0.0.1:0" for any port) until the test
// ends.
func ListenEcho(t testing.TB, addr string) *Echo {
	t.Helper()
	return ListenSlowEcho(t, addr, 0)
}

// ListenSlowEcho is ListenEcho answering each datagram after delay, as a
// service that takes its time does.
func ListenSlowEcho(t testing.TB, addr string, delay time.Duration) *Echo {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatal(err)
	}
	// Every flow's datagrams arrive on this one socket, in bursts.
	_ = pc.SetReadBuffer(4 << 20)
	s := &Echo{pc: pc, peers: map[string]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 1<<16)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.peers[from.String()]++
			s.mu.Unlock()
			if delay == 0 {
				_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
				continue
			}
			b := bytes.Clone(buf[:n])
			wg.Add(1)
			time.AfterFunc(delay, func() {
				defer wg.Done()
				_, _ = pc.WriteToUDPAddrPort(b, from)
			})
		}
	})
	return s
}

// Addr is the echo's address.
func (s *Echo) Addr() string { return s.pc.LocalAddr().String() }

// Clients is how many client addresses have sent to the echo.
func (s *Echo) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.peers)
}

// Dial connects a UDP socket to addr, closed when the test ends.
func Dial(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Exchange sends n datagrams of random sizes in [16, maxSize] through c,
// at most window outstanding, and checks that each comes back whole and
// unchanged: a lost, cut, altered or foreign reply is an error. tag marks
// this exchange's datagrams, so that a reply meant for another flow is
// told apart.
func Exchange(c *net.UDPConn, n, maxSize, window int, tag string) error {
	return ExchangeLossy(c, n, maxSize, window, tag, 0)
}

// lostAfter is how long ExchangeLossy waits for a reply before it counts
// the datagrams still outstanding as lost.
const lostAfter = time.Second

// ExchangeLossy is Exchange over a path that may lose up to maxLost
// datagrams, as UDP may (a QUIC datagram is not retransmitted): a reply
// that does not come within lostAfter counts as lost, and more than
// maxLost lost is an error. What does come back must still be whole,
// unchanged and this exchange's.
func ExchangeLossy(c *net.UDPConn, n, maxSize, window int, tag string, maxLost int) error {
	if maxSize < 16 {
		return fmt.Errorf("max size %d: too small for a sequence number and a tag", maxSize)
	}
	sent := map[uint32][]byte{}
	late := map[uint32][]byte{} // counted lost; a reply may still come
	buf := make([]byte, 1<<16)
	next, got, lost := 0, 0, 0
	for got+lost < n {
		for next < n && len(sent) < window {
			b := make([]byte, 16+rand.IntN(maxSize-15))
			for i := range b {
				b[i] = byte(rand.Uint32())
			}
			copy(b, fmt.Sprintf("%08x%-8.8s", next, tag))
			sent[uint32(next)] = b
			if _, err := c.Write(b); err != nil {
				return err
			}
			next++
		}
		wait := 5 * time.Second
		if maxLost > 0 {
			wait = lostAfter
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		m, err := c.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && lost+len(sent) <= maxLost {
			lost += len(sent)
			maps.Copy(late, sent)
			clear(sent)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %d of %d datagrams came back, %d lost before: %w", tag, got, n, lost, err)
		}
		var seq uint32
		if _, err := fmt.Sscanf(string(buf[:8]), "%08x", &seq); err != nil || m < 16 {
			return fmt.Errorf("%s: a reply without a sequence number: %q", tag, buf[:min(m, 16)])
		}
		want, ok := sent[seq]
		delete(sent, seq)
		if w, wasLate := late[seq]; !ok && wasLate {
			want, ok = w, true
			delete(late, seq)
			lost--
		}
		if !ok || !bytes.Equal(buf[:m], want) {
			return fmt.Errorf("%s: datagram %d came back other than sent (%d bytes, sent %d)", tag, seq, m, len(want))
		}
		got++
	}
	return nil
}
