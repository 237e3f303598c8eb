package client

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/wire"
)

// Kind is what an endpoint carries over its streams beyond plain TCP
// (connet v0.15's endpoint kinds). Every kind announces as tcp, so that any
// stream source reaches any stream destination: the bytes of a stream are
// what a TCP connection to a tcp destination would carry (TLS records for
// a tls source's clients are ended at the source, HTTP/1.1 for http ones).
type Kind struct {
	// Scheme is "" or "tcp" (plain), "tls", "http", "https", "file"
	// (destinations), "ws" or "wss" (sources).
	Scheme string
	// Path: an http(s) source's prefix (requests outside it get 404, and
	// it is stripped), an http(s) destination's base path (prefixed to
	// each request's), a file destination's root directory.
	Path string
	// TLS is a tls/https destination's client configuration, or a
	// tls/https/wss source's server configuration.
	TLS *tls.Config
	// DialTimeout: a destination's dial of its service (10s when 0); a
	// source's wait for a usable path (connectWait when 0).
	DialTimeout time.Duration
}

func (k Kind) plain() bool { return k.Scheme == "" || k.Scheme == "tcp" }

// pipe reports whether a destination of kind k carries each stream as a
// byte pipe to its service (a resumable flow), not as HTTP served on it.
func (k Kind) pipe() bool { return k.plain() || k.Scheme == "tls" }

// halfConn is a connection proxy carries: it can end its writing alone.
type halfConn interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// streamConn is a peer stream as a net.Conn, for HTTP clients and servers
// that run over streams; it counts bytes as proxy does (writes are out).
type streamConn struct {
	st            *quic.Stream
	local, remote net.Addr
	in, out       []*atomic.Int64
	active        []*atomic.Int64
	note          *trafficNote
	once          sync.Once
	closed        chan struct{}
}

func newStreamConn(st *quic.Stream, local, remote net.Addr, note *trafficNote, counters ...*traffic) *streamConn {
	s := &streamConn{st: st, local: local, remote: remote, note: note, closed: make(chan struct{})}
	for _, t := range counters {
		s.out, s.in, s.active = append(s.out, &t.out), append(s.in, &t.in), append(s.active, &t.active)
		t.active.Add(1)
	}
	return s
}

func (s *streamConn) Read(b []byte) (int, error) {
	n, err := s.st.Read(b)
	s.count(s.in, n)
	return n, err
}

func (s *streamConn) Write(b []byte) (int, error) {
	n, err := s.st.Write(b)
	s.count(s.out, n)
	return n, err
}

func (s *streamConn) count(cs []*atomic.Int64, n int) {
	if n <= 0 {
		return
	}
	for _, c := range cs {
		c.Add(int64(n))
	}
	s.note.moved()
}

// CloseWrite sends FIN: the other side reads EOF.
func (s *streamConn) CloseWrite() error { return s.st.Close() }

func (s *streamConn) Close() error {
	s.once.Do(func() {
		_ = s.st.Close()
		s.st.CancelRead(wire.StreamAborted) // nothing more is read
		for _, a := range s.active {
			a.Add(-1)
		}
		close(s.closed)
	})
	return nil
}

func (s *streamConn) LocalAddr() net.Addr                { return s.local }
func (s *streamConn) RemoteAddr() net.Addr               { return s.remote }
func (s *streamConn) SetDeadline(t time.Time) error      { return s.st.SetDeadline(t) }
func (s *streamConn) SetReadDeadline(t time.Time) error  { return s.st.SetReadDeadline(t) }
func (s *streamConn) SetWriteDeadline(t time.Time) error { return s.st.SetWriteDeadline(t) }

// oneConnListener hands out one connection, then blocks until it is closed:
// http.Server.Serve on it serves that connection and returns when it ends.
type oneConnListener struct {
	conn *streamConn
	mu   sync.Mutex
	done bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	first := !l.done
	l.done = true
	l.mu.Unlock()
	if first {
		return l.conn, nil
	}
	<-l.conn.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.local }

// addrOf is a "host:port" as a net.Addr, for RemoteAddr.
type addrOf string

func (a addrOf) Network() string { return "tcp" }
func (a addrOf) String() string  { return string(a) }
