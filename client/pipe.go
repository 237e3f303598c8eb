package client

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/bufpool"
	"github.com/connetd/connetd/wire"
)

// copyAdaptive copies until EOF (nil error) or a failure; moved is told
// of every write.
func copyAdaptive(dst io.Writer, src io.Reader, counts []*atomic.Int64, moved func()) error {
	rb := bufpool.NewReader()
	defer rb.Release()
	for {
		buf := rb.Buf()
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			for _, c := range counts {
				c.Add(int64(n))
			}
			moved()
			rb.Read(n)
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			return rerr
		}
	}
}

// traffic counts bytes in each direction; out is TCP→peer.
type traffic struct {
	in, out atomic.Int64
	active  atomic.Int64 // connections being proxied now
}

// proxy moves bytes both ways between a TCP (or TLS, WebSocket) connection and a peer stream
// and carries half-closes across: EOF from TCP becomes FIN on the stream and
// FIN from the stream becomes shutdown(SHUT_WR) on TCP. A failure on either
// side aborts both.
func proxy(tcp halfConn, st *quic.Stream, note *trafficNote, counters ...*traffic) {
	var out, in []*atomic.Int64
	for _, t := range counters {
		out, in = append(out, &t.out), append(in, &t.in)
		t.active.Add(1)
		defer t.active.Add(-1)
	}
	moved := note.moved
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := copyAdaptive(st, tcp, out, moved); err != nil {
			st.CancelWrite(wire.StreamAborted)
			st.CancelRead(wire.StreamAborted)
			return
		}
		_ = st.Close()
	})
	if err := copyAdaptive(tcp, st, in, moved); err != nil {
		st.CancelRead(wire.StreamAborted)
		st.CancelWrite(wire.StreamAborted)
		if t, ok := tcp.(*net.TCPConn); ok {
			_ = t.SetLinger(0)
		}
		_ = tcp.Close() // unblocks the other direction's read
	} else {
		_ = tcp.CloseWrite()
	}
	wg.Wait()
	_ = tcp.Close()
}
