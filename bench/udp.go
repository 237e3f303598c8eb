package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// UDP datagrams to the bench's UDP server start with a mode byte, like the
// TCP connections to the bench server. A sink datagram then carries the
// trial it belongs to and its sequence number in that trial; an echo
// datagram is sent back as it came.
const (
	udpHeader     = 1 + 4 + 8 // mode, trial, sequence
	udpPayloadMax = 1200      // sink datagram size, unless the path carries less
	udpBufBytes   = 4 << 20   // socket buffers: a pacing burst must not overflow them
)

// udpTrialCount is what the sink received of one trial.
type udpTrialCount struct {
	datagrams, bytes atomic.Int64
	maxSeq           atomic.Uint64 // highest sequence number seen, plus one
}

// udpServer is the UDP target behind connetd's udp destinations and the
// raw-UDP baseline: it counts sink datagrams per trial and echoes the rest.
type udpServer struct {
	pc     *net.UDPConn
	wg     sync.WaitGroup
	mu     sync.Mutex
	trials map[uint32]*udpTrialCount
}

func startUDPServer() (*udpServer, error) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("bench udp server listen: %w", err)
	}
	_ = pc.SetReadBuffer(udpBufBytes)
	_ = pc.SetWriteBuffer(udpBufBytes)
	s := &udpServer{pc: pc, trials: map[uint32]*udpTrialCount{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *udpServer) addr() string { return s.pc.LocalAddr().String() }

func (s *udpServer) close() {
	s.pc.Close()
	s.wg.Wait()
}

// trial registers a new trial ID and returns its counts.
func (s *udpServer) trial(id uint32) *udpTrialCount {
	c := &udpTrialCount{}
	s.mu.Lock()
	s.trials[id] = c
	s.mu.Unlock()
	return c
}

func (s *udpServer) endTrial(id uint32) {
	s.mu.Lock()
	delete(s.trials, id)
	s.mu.Unlock()
}

func (s *udpServer) serve() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.pc.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n == 0 {
			continue
		}
		switch buf[0] {
		case modeEcho:
			_, _ = s.pc.WriteToUDPAddrPort(buf[:n], from)
		case modeSink:
			if n < udpHeader {
				continue
			}
			s.mu.Lock()
			c := s.trials[binary.BigEndian.Uint32(buf[1:])]
			s.mu.Unlock()
			if c == nil {
				continue // a straggler of a finished trial
			}
			c.datagrams.Add(1)
			c.bytes.Add(int64(n))
			if seq := binary.BigEndian.Uint64(buf[5:]) + 1; seq > c.maxSeq.Load() {
				c.maxSeq.Store(seq) // one reader: no race between load and store
			}
		}
	}
}

// udpTrial is one paced send of sink datagrams and what arrived of it.
type udpTrial struct {
	offered  float64 // MB/s the sender managed to offer
	sent     int64   // datagrams
	received int64   // datagrams counted by the sink
	bytes    int64   // bytes counted by the sink
	elapsed  time.Duration
	cpu      map[string]float64 // CPU seconds per process during the trial
}

func (t udpTrial) loss() float64 {
	if t.sent == 0 {
		return 1
	}
	return 1 - float64(t.received)/float64(t.sent)
}

// mbps is the rate delivered to the sink.
func (t udpTrial) mbps() float64 {
	return throughput{bytes: t.bytes, elapsed: t.elapsed}.mbps()
}

// udpPaceSlack is how far behind its schedule the sender may fall before
// it gives up catching up: it sends no burst longer than this.
const udpPaceSlack = 64

var udpTrialSeq atomic.Uint32

// runUDPTrial sends size-byte datagrams from one socket to addr at rate
// MB/s (0: as fast as the socket takes them) for d, then waits for the
// stragglers and reads the sink's count.
func runUDPTrial(srv *udpServer, addr string, size int, rate float64, d time.Duration) (udpTrial, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return udpTrial{}, fmt.Errorf("dial udp %s: %w", addr, err)
	}
	defer c.Close()
	_ = c.(*net.UDPConn).SetWriteBuffer(udpBufBytes)
	id := udpTrialSeq.Add(1)
	count := srv.trial(id)
	defer srv.endTrial(id)

	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	msg[0] = modeSink
	binary.BigEndian.PutUint32(msg[1:], id)
	interval := time.Duration(0)
	if rate > 0 {
		interval = time.Duration(float64(size) / (rate * 1e6) * float64(time.Second))
	}
	var sent int64
	start := time.Now()
	next := start
	for {
		now := time.Now()
		if now.Sub(start) >= d {
			break
		}
		if interval > 0 {
			if ahead := next.Sub(now); ahead > 0 {
				time.Sleep(ahead)
				continue
			}
			if behind := now.Sub(next); behind > udpPaceSlack*interval {
				next = now.Add(-udpPaceSlack * interval)
			}
			next = next.Add(interval)
		}
		binary.BigEndian.PutUint64(msg[5:], uint64(sent))
		if _, err := c.Write(msg); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return udpTrial{}, err
			}
			continue // e.g. ENOBUFS or a refused port: the datagram is lost
		}
		sent++
	}
	sendTime := time.Since(start)
	// Stragglers: wait until the count stops moving, within reason.
	last := int64(-1)
	for i := 0; i < 20; i++ {
		time.Sleep(20 * time.Millisecond)
		got := count.datagrams.Load()
		if got == last || got >= sent {
			break
		}
		last = got
	}
	t := udpTrial{offered: float64(sent) * float64(size) / 1e6 / sendTime.Seconds(), sent: sent,
		received: count.datagrams.Load(), bytes: count.bytes.Load(), elapsed: sendTime}
	if top := int64(count.maxSeq.Load()); top > sent {
		return t, fmt.Errorf("sink saw sequence number %d of %d sent", top-1, sent)
	}
	return t, nil
}

// udpResult is one route's UDP measurements.
type udpResult struct {
	size   int      // payload per datagram
	best   udpTrial // the highest rate with at most udpMaxLoss lost
	trials int
	echo   []time.Duration
	lost   int // echo requests that got no answer in time
}

const (
	udpMaxLoss  = 0.01
	udpTrials   = 6 // per route, the first unpaced
	udpEchoWait = 200 * time.Millisecond
)

// udpThroughput finds the highest rate at which at most 1% of the
// datagrams are lost: one unpaced trial gives the sender's ceiling and what
// the path delivered of it, then a binary search between the best rate
// lost little and the lowest one that lost too much. trial runs one trial.
func udpThroughput(trial func(rate float64) (udpTrial, error)) (best udpTrial, n int, err error) {
	var lo, hi float64 // best rate that passed, lowest that failed
	try := func(rate float64) (udpTrial, bool, error) {
		n++
		t, err := trial(rate)
		if err != nil {
			return t, false, err
		}
		ok := t.loss() <= udpMaxLoss
		if ok && t.mbps() > best.mbps() {
			best = t
		}
		if ok {
			lo = max(lo, t.offered)
		} else if hi == 0 || t.offered < hi {
			hi = t.offered
		}
		return t, ok, nil
	}
	flood, ok, err := try(0)
	if err != nil || ok {
		return best, n, err // the sender is the limit
	}
	// What the path delivered when flooded is near its capacity.
	next := max(flood.mbps(), hi*0.3)
	for n < udpTrials {
		if _, _, err := try(next); err != nil {
			return best, n, err
		}
		if lo == 0 {
			next = hi * 0.5
		} else {
			next = (lo + hi) / 2
		}
		if hi > 0 && lo > 0 && hi-lo < 0.03*hi {
			break
		}
	}
	return best, n, nil
}

// udpEchoLatency times rounds request/response exchanges of echoSize
// bytes, one outstanding at a time, after warm-up ones; a request not
// answered within udpEchoWait is counted lost and sent again.
func udpEchoLatency(addr string, warmup, rounds int) (lat []time.Duration, lost int, err error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return nil, 0, fmt.Errorf("dial udp %s: %w", addr, err)
	}
	defer c.Close()
	msg, back := make([]byte, echoSize), make([]byte, 2*echoSize)
	msg[0] = modeEcho
	lat = make([]time.Duration, 0, rounds)
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < warmup+rounds; {
		if time.Now().After(deadline) {
			return nil, lost, fmt.Errorf("udp echo: %d of %d rounds in 60s (%d lost)", i, warmup+rounds, lost)
		}
		binary.BigEndian.PutUint32(msg[1:], uint32(i))
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, lost, fmt.Errorf("udp echo round %d: write: %w", i, err)
		}
		_ = c.SetReadDeadline(t0.Add(udpEchoWait))
		for {
			n, err := c.Read(back)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				lost++
				break
			}
			if err != nil {
				// A refused port (no flow yet) shows as a read error: retry.
				lost++
				time.Sleep(10 * time.Millisecond)
				break
			}
			if n != echoSize || binary.BigEndian.Uint32(back[1:]) != uint32(i) {
				continue // a late answer to an earlier, lost request
			}
			if d := time.Since(t0); i >= warmup {
				lat = append(lat, d)
			}
			i++
			break
		}
	}
	return lat, lost, nil
}
