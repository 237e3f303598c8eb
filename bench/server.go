package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The first byte of every connection to the bench server picks its mode.
// One address serves both, so connetd needs one destination per route only.
const (
	modeEcho byte = 'E' // echo everything back until EOF
	modeSink byte = 'S' // count bytes until EOF, then reply with the count
)

const echoSize = 64 // bytes per echo round trip

// idleLimit bounds how long a bench connection may sit silent, so a broken
// path shows up as an error rather than a hang.
const idleLimit = 30 * time.Second

// benchServer is the target behind connetd and the raw-TCP baseline.
type benchServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startBenchServer() (*benchServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench server listen: %w", err)
	}
	s := &benchServer{ln: ln}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *benchServer) addr() string { return s.ln.Addr().String() }

func (s *benchServer) close() {
	s.ln.Close()
	s.wg.Wait()
}

func (s *benchServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			_ = serveConn(c.(*net.TCPConn)) // the client side reports failures
		}()
	}
}

// deadlineConn refreshes the deadline on every read so that only silence,
// not a long transfer, trips it.
type deadlineConn struct{ *net.TCPConn }

func (d deadlineConn) Read(b []byte) (int, error) {
	_ = d.SetDeadline(time.Now().Add(idleLimit))
	return d.TCPConn.Read(b)
}

func serveConn(c *net.TCPConn) error {
	dc := deadlineConn{c}
	var mode [1]byte
	if _, err := io.ReadFull(dc, mode[:]); err != nil {
		return fmt.Errorf("read mode: %w", err)
	}
	switch mode[0] {
	case modeEcho:
		_, err := io.Copy(c, dc)
		return err
	case modeSink:
		n, err := drain(dc)
		if err != nil {
			return err
		}
		var reply [8]byte
		binary.BigEndian.PutUint64(reply[:], uint64(n))
		if _, err := c.Write(reply[:]); err != nil {
			return fmt.Errorf("write count: %w", err)
		}
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode[0])
}

// drain reads until EOF and returns the byte count.
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("drain after %d bytes: %w", n, err)
		}
	}
}
