package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/internal/ctladdr"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// dialTimeout bounds the dial and the hello together; failoverDialTimeout
// does when another control node may be up.
const (
	dialTimeout         = 10 * time.Second
	failoverDialTimeout = 3 * time.Second
)

// noApplicationProtocol is the TLS alert (120) of a server that speaks none
// of the ALPNs offered, as a QUIC CRYPTO_ERROR.
const noApplicationProtocol = quic.TransportErrorCode(0x100 + 120)

// controlLink is a relay's control stream; closing it closes the
// connection, which has no other use.
type controlLink struct {
	*quic.Stream
	conn *quic.Conn
}

func (l controlLink) Close() error { return l.conn.CloseWithError(wire.ConnNormal, "") }

// DialControl connects to control at addr from the relay's own socket (so
// that control sees the address clients will reach) and says relay_hello:
// token authenticates the relay, advert is the host:port clients should
// dial. tlsConf verifies control; the relay's certificate and the ALPN are
// filled in here. A refusal is returned as a *wire.Error.
func (s *Server) DialControl(ctx context.Context, addr string, tlsConf *tls.Config, token, advert string) (io.ReadWriteCloser, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolve control %s: %w", addr, err)
	}
	l, err := s.DialControlTarget(ctx, ctladdr.Target{Entry: addr, Addr: ua.AddrPort()}, false, tlsConf, token, advert)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// DialControlTarget is DialControl to one target of a control address
// list. With several, the connection notices a dead control node within
// about a second (quicconf.ControlFailover), so that the relay moves on.
// tlsConf without a server name verifies the target's host.
func (s *Server) DialControlTarget(ctx context.Context, t ctladdr.Target, several bool, tlsConf *tls.Config, token, advert string) (ControlLink, error) {
	addr := t.Entry
	conf := tlsConf.Clone()
	conf.MinVersion = tls.VersionTLS13
	conf.Certificates = []tls.Certificate{s.cfg.Identity.Cert}
	conf.NextProtos = []string{wire.ALPNRelayControl}
	if conf.ServerName == "" {
		conf.ServerName = t.Host()
	}
	qconf, timeout := quicconf.Control(), dialTimeout
	if several {
		qconf, timeout = quicconf.ControlFailover(), failoverDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := s.tr.Dial(dctx, t.UDPAddr(), conf, qconf)
	var terr *quic.TransportError
	if errors.As(err, &terr) && terr.ErrorCode == noApplicationProtocol {
		return ControlLink{}, fmt.Errorf("dial control %s: %w (it does not speak %s: a different version of connetd?)", addr, err, wire.ALPNRelayControl)
	}
	if err != nil {
		return ControlLink{}, fmt.Errorf("dial control %s: %w", addr, err)
	}
	st, err := conn.OpenStreamSync(dctx)
	var welcome *wire.Welcome
	if err == nil {
		welcome, err = wire.Handshake(dctx, st, &wire.RelayHello{Token: token, Addr: advert}, wire.ControlToRelay)
	}
	if err != nil {
		_ = conn.CloseWithError(wire.ConnNormal, "")
		return ControlLink{}, fmt.Errorf("control %s: %w", addr, err)
	}
	return ControlLink{ReadWriteCloser: controlLink{st, conn}, Addr: t.Addr.String(), Node: welcome.Node}, nil
}
