package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/wire"
)

// destDialTimeout is how long a destination dials its service by default.
const destDialTimeout = 10 * time.Second

func (d *destination) dialTimeout() time.Duration {
	if d.kind.DialTimeout > 0 {
		return d.kind.DialTimeout
	}
	return destDialTimeout
}

// initKind checks a destination's kind and makes what its streams share:
// the reverse proxy of an http(s) destination (one pool of connections to
// the service), the file server of a file destination.
func (d *destination) initKind(k Kind, log *slog.Logger) error {
	d.kind = k
	switch k.Scheme {
	case "", "tcp":
		return nil
	case "tls", "http", "https", "file":
	default:
		return fmt.Errorf("kind %q is not one of tcp, tls, http, https, file", k.Scheme)
	}
	if d.proto != wire.ProtoTCP {
		return fmt.Errorf("a %s destination carries streams, not %s", k.Scheme, d.proto)
	}
	if d.proxyProto != "" && k.Scheme != "tls" {
		return fmt.Errorf("PROXY protocol is for tcp and tls destinations, not %s", k.Scheme)
	}
	errLog := slog.NewLogLogger(log.With("endpoint", d.name).Handler(), slog.LevelDebug)
	switch k.Scheme {
	case "file":
		d.handler = http.FileServer(http.Dir(k.Path))
		if d.addr == "" {
			d.addr = "file://" + k.Path // what the status shows
		}
	case "http", "https":
		target, err := url.Parse(k.Scheme + "://" + d.addr + k.Path)
		if err != nil {
			return err
		}
		tr := &http.Transport{
			DialContext:         func(ctx context.Context, _, addr string) (net.Conn, error) { return d.dialService(ctx, addr) },
			TLSClientConfig:     d.tlsConfig(),
			TLSHandshakeTimeout: d.dialTimeout(),
			ForceAttemptHTTP2:   k.Scheme == "https",
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		}
		d.transport = tr
		d.handler = &httputil.ReverseProxy{
			Transport: tr,
			ErrorLog:  errLog,
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(target) // request /x goes to PATH/x, Host is the service's
				// The tunnel's client is the source's client: its
				// address is the stream's From, the only one set.
				if host, _, err := net.SplitHostPort(r.In.RemoteAddr); err == nil {
					r.Out.Header.Set("X-Forwarded-For", host)
				}
				r.Out.Header.Set("X-Forwarded-Host", r.In.Host)
				// An http(s) source says which it is; anything else
				// (a tcp source's client) is taken as http.
				proto := "http"
				if r.In.Header.Get("X-Forwarded-Proto") == "https" {
					proto = "https"
				}
				r.Out.Header.Set("X-Forwarded-Proto", proto)
			},
		}
	}
	d.httpErrLog = errLog
	return nil
}

// tlsConfig is the client configuration of a tls/https destination, with
// the service's host as its name unless one was given.
func (d *destination) tlsConfig() *tls.Config {
	if d.kind.Scheme != "tls" && d.kind.Scheme != "https" {
		return nil
	}
	cfg := &tls.Config{}
	if d.kind.TLS != nil {
		cfg = d.kind.TLS.Clone()
	}
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(d.addr); err == nil {
			cfg.ServerName = host
		}
	}
	return cfg
}

func (d *destination) stopKind() {
	if d.transport != nil {
		d.transport.CloseIdleConnections()
	}
}

// serveKind serves a stream of a destination that is not plain tcp, and
// says whether it did; from is the PROXY header's source, when one is
// sent.
func (p *peer) serveKind(conn *quic.Conn, st *quic.Stream, pa path, m *wire.Connect, d *destination, from netip.AddrPort) bool {
	c := p.c
	log := c.log.With("endpoint", d.name, "peer", p.id.Short(), "route", pa.String())
	counters := []*traffic{&d.traffic, &p.traffic, p.byPath.get(pathKey{d.name, false, pa})}
	switch d.kind.Scheme {
	case "", "tcp":
		return false
	case "tls":
		tc, err := d.dialService(context.Background(), d.addr)
		if err != nil {
			log.Warn("destination service unreachable", "addr", d.addr, "err", err)
			abort(st, wire.StreamDialFailed)
			return true
		}
		if d.proxyProto != "" {
			if err := writeProxyHeader(tc, d.proxyProto, from); err != nil {
				log.Warn("proxy protocol header", "err", err)
				abort(st, wire.StreamDialFailed)
				_ = tc.Close()
				return true
			}
		}
		tlc := tls.Client(tc, d.tlsConfig())
		ctx, cancel := context.WithTimeout(context.Background(), d.dialTimeout())
		err = tlc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			log.Warn("destination service TLS handshake failed", "addr", d.addr, "err", err)
			abort(st, wire.StreamDialFailed)
			_ = tc.Close()
			return true
		}
		if !confirm(st, m) {
			_ = tc.Close()
			return true
		}
		log.Debug("connection routed", "from", m.From)
		p.carry(tlc, st, conn, pa, d.name, m.Flow, false, &d.traffic, &p.traffic)
	default: // http, https, file: an HTTP server on the stream
		// Nothing is dialed before the first request (a proxy's backend
		// connection comes from its pool): the server is ready now.
		if !confirm(st, m) {
			return true
		}
		sc := newStreamConn(st, conn.LocalAddr(), addrOf(m.From), &c.traffic, counters...)
		srv := &http.Server{Handler: d.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute, ErrorLog: d.httpErrLog}
		log.Debug("connection routed", "from", m.From, "kind", d.kind.Scheme)
		_ = srv.Serve(&oneConnListener{conn: sc})
		_ = sc.Close()
	}
	return true
}

// destKind is what a destination of a kind holds.
type destKind struct {
	kind       Kind
	handler    http.Handler    // http, https, file
	transport  *http.Transport // http, https
	httpErrLog *log.Logger
}
