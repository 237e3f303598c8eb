package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/wire"
)

// errNoTunnel is a failure to open a stream to a destination.
var errNoTunnel = errors.New("no usable path to a destination")

// checkSourceKind checks a source's kind against its protocol.
func checkSourceKind(k Kind, proto string) error {
	switch k.Scheme {
	case "", "tcp":
		return nil
	case "tls", "https", "wss":
		if k.TLS == nil || (len(k.TLS.Certificates) == 0 && k.TLS.GetCertificate == nil && k.TLS.GetConfigForClient == nil) {
			return fmt.Errorf("a %s source needs a server certificate", k.Scheme)
		}
	case "http", "ws":
	default:
		return fmt.Errorf("kind %q is not one of tcp, tls, http, https, ws, wss", k.Scheme)
	}
	if proto != wire.ProtoTCP {
		return fmt.Errorf("a %s source carries streams, not %s", k.Scheme, proto)
	}
	return nil
}

func (s *source) connectWait() time.Duration {
	if s.kind.DialTimeout > 0 {
		return s.kind.DialTimeout
	}
	return connectWait
}

// openTunnel opens a stream to a destination of the source for a client at
// from, on the best path, waiting up to connectWait for one (right after
// start-up, or while a path is redone); it returns the counters the
// stream's bytes go to. Every source kind but a balancing one opens its
// streams here. A nonzero flow asks for a resumable flow of that ID, which
// the tunnel gets if its connection supports them (tunnel.flow).
func (s *source) openTunnel(ctx context.Context, c *Client, from string, flow uint64) (tunnel, error) {
	deadline := time.NewTimer(s.connectWait())
	defer deadline.Stop()
	for {
		changed := c.changed.C()
		p, pa, conn := c.pick(s.name)
		if conn != nil {
			st, err := conn.OpenStream()
			if err == nil {
				c.log.Debug("connection routed", "endpoint", s.name, "from", from, "peer", p.id.Short(), "route", pa.String())
				if !resumable(conn) {
					flow = 0
				}
				if err := wire.Write(st, &wire.Connect{Endpoint: s.name, From: from, Flow: flow}); err != nil {
					abort(st, wire.StreamAborted)
					return tunnel{}, err
				}
				return tunnel{st: st, counters: []*traffic{&s.traffic, &p.traffic, p.byPath.get(pathKey{s.name, true, pa})},
					p: p, conn: conn, pa: pa, flow: flow}, nil
			}
			var nerr net.Error
			if errors.As(err, &nerr) && nerr.Timeout() || conn.Context().Err() == nil {
				return tunnel{}, fmt.Errorf("peer stream limit reached: %w", err)
			}
		}
		select {
		case <-changed:
			continue
		case <-deadline.C:
		case <-ctx.Done():
		}
		return tunnel{}, errNoTunnel
	}
}

// tunnel is an opened stream to a destination, with where it goes.
type tunnel struct {
	st       *quic.Stream
	counters []*traffic
	p        *peer
	conn     *quic.Conn
	pa       path
	flow     uint64 // nonzero: a resumable flow
}

// serveKind serves a source that is not plain tcp on its listener until
// ctx ends.
func (s *source) serveKind(ctx context.Context, c *Client) {
	ln := s.ln
	if s.kind.TLS != nil {
		ln = tls.NewListener(ln, s.kind.TLS)
	}
	if s.kind.Scheme == "tls" {
		s.acceptTLS(ctx, c, ln)
		return
	}
	log := c.log.With("endpoint", s.name)
	hs := &httpSource{s: s, c: c, log: log, scheme: strings.TrimSuffix(s.kind.Scheme, "s")}
	if s.kind.Scheme == "https" {
		hs.scheme = "https"
	}
	srv := &http.Server{
		Handler:           hs,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext:       hs.connContext,
		ConnState:         hs.connState,
	}
	if s.kind.Scheme == "ws" || s.kind.Scheme == "wss" {
		srv.Handler = &wsSource{s: s, c: c, ctx: context.WithoutCancel(ctx), log: log}
		srv.ConnContext, srv.ConnState = nil, nil
	}
	var done sync.WaitGroup
	done.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
	})
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && ctx.Err() == nil {
		log.Error("source serve failed", "err", err)
	}
	done.Wait()
}

// acceptTLS is accept for a tls source: each connection's TLS is ended
// here and its bytes go over the stream.
func (s *source) acceptTLS(ctx context.Context, c *Client, ln net.Listener) {
	var flows sync.WaitGroup
	defer flows.Wait()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				c.log.Error("source accept failed", "endpoint", s.name, "err", err)
			}
			return
		}
		flows.Go(func() {
			tc := conn.(*tls.Conn)
			log := c.log.With("endpoint", s.name, "from", tc.RemoteAddr().String())
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := tc.HandshakeContext(hctx)
			cancel()
			if err != nil {
				log.Debug("TLS handshake failed", "err", err)
				_ = tc.Close()
				return
			}
			t, err := s.openTunnel(ctx, c, tc.RemoteAddr().String(), newFlowID())
			if err != nil {
				log.Warn("refusing connection", "err", err)
				_ = tc.Close()
				return
			}
			t.p.carry(tc, t.st, t.conn, t.pa, s.name, t.flow, true, &s.traffic, &t.p.traffic)
		})
	}
}

// httpSource reverse-proxies each request under its prefix over the
// tunnel, as HTTP/1.1: each client connection gets its own transport and
// so its own stream (one stream per keep-alive connection, opened at its
// first request), so that the destination sees the client's address.
type httpSource struct {
	s      *source
	c      *Client
	log    *slog.Logger
	scheme string // http or https
	conns  sync.Map
}

type transportKey struct{}

func (h *httpSource) connContext(ctx context.Context, conn net.Conn) context.Context {
	from := conn.RemoteAddr().String()
	local := conn.LocalAddr()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			t, err := h.s.openTunnel(ctx, h.c, from, 0)
			if err != nil {
				return nil, err
			}
			return newStreamConn(t.st, local, addrOf(h.s.name), &h.c.traffic, t.counters...), nil
		},
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // pass Accept-Encoding on as it is
	}
	h.conns.Store(conn, tr)
	return context.WithValue(ctx, transportKey{}, tr)
}

func (h *httpSource) connState(conn net.Conn, state http.ConnState) {
	if state == http.StateClosed || state == http.StateHijacked {
		if tr, ok := h.conns.LoadAndDelete(conn); ok {
			tr.(*http.Transport).CloseIdleConnections()
		}
	}
}

// stripPrefix is path without prefix, if it is under it.
func stripPrefix(path, prefix string) (string, bool) {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return path, true
	}
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", false
	}
	if rest == "" {
		rest = "/"
	}
	return rest, true
}

func (h *httpSource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := stripPrefix(r.URL.Path, h.s.kind.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	tr, _ := r.Context().Value(transportKey{}).(*http.Transport)
	if tr == nil {
		http.Error(w, "no transport", http.StatusInternalServerError)
		return
	}
	rp := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "connetd.tunnel"
			pr.Out.URL.Path, pr.Out.URL.RawPath = rest, ""
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set("X-Forwarded-Proto", h.scheme)
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			h.log.Warn("request not forwarded", "from", r.RemoteAddr, "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(w, r)
}

// wsSource bridges each WebSocket connection to a tunnel stream: binary
// messages carry the bytes, each way.
type wsSource struct {
	s   *source
	c   *Client
	ctx context.Context // the connections' own, not ended with the source
	log *slog.Logger
}

func (h *wsSource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	wc, err := websocket.Accept(w, r, nil)
	if err != nil {
		h.log.Debug("websocket upgrade failed", "from", r.RemoteAddr, "err", err)
		return
	}
	t, err := h.s.openTunnel(r.Context(), h.c, r.RemoteAddr, newFlowID())
	if err != nil {
		h.log.Warn("refusing connection", "from", r.RemoteAddr, "err", err)
		_ = wc.Close(websocket.StatusTryAgainLater, "no path to a destination")
		return
	}
	t.p.carry(wsConn{websocket.NetConn(h.ctx, wc, websocket.MessageBinary)}, t.st, t.conn, t.pa, h.s.name, t.flow, true,
		&h.s.traffic, &t.p.traffic)
}

// wsConn ends its writing by closing: a WebSocket has no half-close.
type wsConn struct{ net.Conn }

func (c wsConn) CloseWrite() error { return c.Conn.Close() }
