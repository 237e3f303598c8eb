package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"time"
)

// halfCloser is a byte stream whose write side can be closed on its own:
// a TCP connection or a QUIC stream.
type halfCloser interface {
	io.ReadWriter
	CloseWrite() error
}

// throughput is one bulk transfer.
type throughput struct {
	bytes   int64
	elapsed time.Duration
}

func (t throughput) mbps() float64 {
	if t.elapsed <= 0 {
		return 0
	}
	return float64(t.bytes) / 1e6 / t.elapsed.Seconds()
}

const chunkSize = 128 << 10

// sendCounted writes header, then data until size bytes or duration, then
// half-closes and waits for the receiver's 8-byte count. The clock stops
// when the count arrives, so the time covers delivery, not just buffering.
func sendCounted(c halfCloser, header []byte, size int64, duration time.Duration) (throughput, error) {
	if len(header) > 0 {
		if _, err := c.Write(header); err != nil {
			return throughput{}, fmt.Errorf("write header: %w", err)
		}
	}
	chunk := make([]byte, chunkSize)
	for i := range chunk {
		chunk[i] = byte(i * 7) // not all zeros, in case anything compresses
	}
	var sent int64
	start := time.Now()
	for sent < size && time.Since(start) < duration {
		n := int64(len(chunk))
		if size-sent < n {
			n = size - sent
		}
		m, err := c.Write(chunk[:n])
		sent += int64(m)
		if err != nil {
			return throughput{}, fmt.Errorf("write after %d bytes: %w", sent, err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		return throughput{}, fmt.Errorf("half-close after %d bytes: %w", sent, err)
	}
	var reply [8]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		return throughput{}, fmt.Errorf("read count after sending %d bytes: %w", sent, err)
	}
	elapsed := time.Since(start)
	if got := int64(binary.BigEndian.Uint64(reply[:])); got != sent {
		return throughput{}, fmt.Errorf("receiver counted %d bytes, sent %d", got, sent)
	}
	return throughput{bytes: sent, elapsed: elapsed}, nil
}

func dialTCP(addr string) (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c.(*net.TCPConn), nil
}

// tcpThroughput is one sink transfer over a TCP connection to addr.
func tcpThroughput(addr string, size int64, duration time.Duration) (throughput, error) {
	c, err := dialTCP(addr)
	if err != nil {
		return throughput{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(duration + 60*time.Second))
	return sendCounted(c, []byte{modeSink}, size, duration)
}

// echoLatency times rounds 64-byte round trips on one connection after
// warm-up ones, which fill pools and windows and are not counted.
func echoLatency(addr string, warmup, rounds int) ([]time.Duration, error) {
	c, err := dialTCP(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write([]byte{modeEcho}); err != nil {
		return nil, fmt.Errorf("write mode: %w", err)
	}
	msg, back := make([]byte, echoSize), make([]byte, echoSize)
	for i := range msg {
		msg[i] = byte(i)
	}
	lat := make([]time.Duration, 0, rounds)
	for i := 0; i < warmup+rounds; i++ {
		msg[0] = byte(i)
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, fmt.Errorf("echo round %d: write: %w", i, err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return nil, fmt.Errorf("echo round %d: read: %w", i, err)
		}
		d := time.Since(t0)
		if back[0] != msg[0] {
			return nil, fmt.Errorf("echo round %d: got a stale or wrong reply", i)
		}
		if i >= warmup {
			lat = append(lat, d)
		}
	}
	return lat, nil
}

// connectLatency times dial + 64-byte echo + close, each on a new
// connection, after warm-up ones.
func connectLatency(addr string, warmup, n int) ([]time.Duration, error) {
	msg := make([]byte, 1+echoSize)
	msg[0] = modeEcho
	back := make([]byte, echoSize)
	lat := make([]time.Duration, 0, n)
	for i := 0; i < warmup+n; i++ {
		t0 := time.Now()
		c, err := dialTCP(addr)
		if err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		// Mode byte and payload in one write, as a client's first request would be.
		if _, err := c.Write(msg); err != nil {
			c.Close()
			return nil, fmt.Errorf("connection %d: write: %w", i, err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			c.Close()
			return nil, fmt.Errorf("connection %d: read echo: %w", i, err)
		}
		c.Close()
		if i >= warmup {
			lat = append(lat, time.Since(t0))
		}
	}
	return lat, nil
}

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(float64(len(s))*p/100)) - 1
	return s[max(0, min(rank, len(s)-1))]
}
