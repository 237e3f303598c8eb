package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/store"
	"github.com/connetd/connetd/wire"
)

// serverRole is control and relay in one process; the relay talks to
// control over an in-process pipe instead of QUIC.
type serverRole struct {
	cfg      *config.Server
	store    *store.Store
	ctrl     *control.Server
	clientsU *net.UDPConn
	clientsT *quic.Transport
	rel      *relay.Server
	relayU   *net.UDPConn
	relayID  *identity.Identity
	advert   string
}

func newServer(cfg *config.Server, opts Options, log *slog.Logger) (_ role, err error) {
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	r := &serverRole{cfg: cfg}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	var resetKey *quic.StatelessResetKey
	if r.store, resetKey, err = openStore(cfg.StoreDir, "server"); err != nil {
		return nil, err
	}
	r.ctrl = control.New(control.Config{Cert: cert, Auth: serverAuth(cfg), Version: opts.Version, Logger: log})
	if r.clientsU, err = listenUDP(cfg.Addr); err != nil {
		return nil, err
	}
	r.clientsT = &quic.Transport{Conn: r.clientsU, StatelessResetKey: resetKey}
	if r.relayU, err = listenUDP(cfg.RelayAddr); err != nil {
		return nil, err
	}
	if r.relayID, err = storedIdentity(r.store, "relay"); err != nil {
		return nil, err
	}
	r.rel = relay.New(relay.Config{Identity: r.relayID, Conn: r.relayU, Logger: log, StatelessResetKey: resetKey})
	r.advert = net.JoinHostPort(cfg.RelayHostname, strconv.Itoa(r.relayU.LocalAddr().(*net.UDPAddr).Port))
	return r, nil
}

func (r *serverRole) name() string       { return "server" }
func (r *serverRole) statusAddr() string { return r.cfg.StatusAddr }

func (r *serverRole) serve(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	wg.Add(3)
	go func() { defer wg.Done(); errc <- r.ctrl.ServeClients(ctx, r.clientsT) }()
	go func() { defer wg.Done(); errc <- r.rel.Run(ctx) }()
	go func() {
		defer wg.Done()
		var links sync.WaitGroup
		r.rel.RunControl(ctx, func(ctx context.Context) (io.ReadWriteCloser, error) {
			ours, theirs := net.Pipe()
			links.Add(1)
			go func() {
				defer links.Done()
				_ = r.ctrl.AttachRelay(ctx, theirs, r.relayID.DER, r.advert)
				theirs.Close()
			}()
			return ours, nil
		})
		links.Wait()
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

func (r *serverRole) status() any {
	return struct {
		Control control.Status `json:"control"`
		Relay   relay.Status   `json:"relay"`
	}{r.ctrl.Status(), r.rel.Status()}
}

func (r *serverRole) close() {
	if r.clientsT != nil {
		_ = r.clientsT.Close()
	}
	if r.rel != nil {
		_ = r.rel.Close()
	}
	closeAll(r.clientsU, r.relayU)
	if r.store != nil {
		_ = r.store.Close()
	}
}

func closeAll(conns ...*net.UDPConn) {
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
}

func serverAuth(cfg *config.Server) control.Auth {
	return control.Auth{ClientTokens: cfg.TokenValues, ClientIP: cfg.IPRestrict, ClientTokenRestricts: cfg.TokenRestricts}
}

func controlAuth(cfg *config.Control) control.Auth {
	return control.Auth{
		ClientTokens: cfg.ClientsTokenValues, ClientIP: cfg.ClientsIPRestrict, ClientTokenRestricts: cfg.ClientsTokenRestricts,
		RelayTokens: cfg.RelaysTokenValues, RelayIP: cfg.RelaysIPRestrict, RelayTokenRestricts: cfg.RelaysTokenRestricts,
	}
}

// controlRole is a standalone control server; relays connect over QUIC.
type controlRole struct {
	cfg              *config.Control
	store            *store.Store
	ctrl             *control.Server
	clientsU, relayU *net.UDPConn
	clientsT, relayT *quic.Transport
}

func newControl(cfg *config.Control, opts Options, log *slog.Logger) (_ role, err error) {
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load control certificate: %w", err)
	}
	r := &controlRole{cfg: cfg}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	var resetKey *quic.StatelessResetKey
	if r.store, resetKey, err = openStore(cfg.StoreDir, "control"); err != nil {
		return nil, err
	}
	r.ctrl = control.New(control.Config{Cert: cert, Auth: controlAuth(cfg), Version: opts.Version, Logger: log})
	if r.clientsU, err = listenUDP(cfg.ClientsAddr); err != nil {
		return nil, err
	}
	r.clientsT = &quic.Transport{Conn: r.clientsU, StatelessResetKey: resetKey}
	if r.relayU, err = listenUDP(cfg.RelaysAddr); err != nil {
		return nil, err
	}
	r.relayT = &quic.Transport{Conn: r.relayU, StatelessResetKey: resetKey}
	return r, nil
}

func (r *controlRole) name() string       { return "control" }
func (r *controlRole) statusAddr() string { return r.cfg.StatusAddr }
func (r *controlRole) status() any        { return r.ctrl.Status() }

func (r *controlRole) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	errc := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- r.ctrl.ServeClients(ctx, r.clientsT) }()
	go func() { defer wg.Done(); errc <- r.ctrl.ServeRelays(ctx, r.relayT) }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

func (r *controlRole) close() {
	for _, t := range []*quic.Transport{r.clientsT, r.relayT} {
		if t != nil {
			_ = t.Close()
		}
	}
	closeAll(r.clientsU, r.relayU)
	if r.store != nil {
		_ = r.store.Close()
	}
}

// relayRole is a standalone relay that registers with a control server.
type relayRole struct {
	cfg    *config.Relay
	store  *store.Store
	rel    *relay.Server
	udp    *net.UDPConn
	id     *identity.Identity
	advert string
	ctlTLS *tls.Config
}

func newRelay(cfg *config.Relay, opts Options, log *slog.Logger) (_ role, err error) {
	r := &relayRole{cfg: cfg}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	var resetKey *quic.StatelessResetKey
	if r.store, resetKey, err = openStore(cfg.StoreDir, "relay"); err != nil {
		return nil, err
	}
	if r.id, err = storedIdentity(r.store, "relay"); err != nil {
		return nil, err
	}
	if r.ctlTLS, err = serverTLS(cfg.ControlAddr, cfg.ControlCAs); err != nil {
		return nil, err
	}
	r.ctlTLS.Certificates = []tls.Certificate{r.id.Cert}
	r.ctlTLS.NextProtos = []string{wire.ALPNRelayControl}
	if r.udp, err = listenUDP(cfg.Addr); err != nil {
		return nil, err
	}
	r.rel = relay.New(relay.Config{Identity: r.id, Conn: r.udp, Logger: log, StatelessResetKey: resetKey})
	r.advert = net.JoinHostPort(cfg.Hostname, strconv.Itoa(r.udp.LocalAddr().(*net.UDPAddr).Port))
	return r, nil
}

func (r *relayRole) name() string       { return "relay" }
func (r *relayRole) statusAddr() string { return r.cfg.StatusAddr }
func (r *relayRole) status() any        { return r.rel.Status() }

func (r *relayRole) serve(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); r.rel.RunControl(ctx, r.dialControl) }()
	return r.rel.Run(ctx)
}

// streamLink is a relay's control stream; closing it closes the connection.
type streamLink struct {
	*quic.Stream
	conn *quic.Conn
}

func (l streamLink) Close() error { return l.conn.CloseWithError(wire.ConnNormal, "") }

func (r *relayRole) dialControl(ctx context.Context) (io.ReadWriteCloser, error) {
	addr, err := net.ResolveUDPAddr("udp", r.cfg.ControlAddr)
	if err != nil {
		return nil, fmt.Errorf("resolve control %s: %w", r.cfg.ControlAddr, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := r.rel.Transport().Dial(dctx, addr, r.ctlTLS, quicconf.Control())
	if err != nil {
		return nil, fmt.Errorf("dial control %s: %w", r.cfg.ControlAddr, err)
	}
	link, err := relayHello(dctx, conn, r.cfg.TokenValue, r.advert)
	if err != nil {
		_ = conn.CloseWithError(wire.ConnNormal, "")
		return nil, err
	}
	return link, nil
}

func relayHello(ctx context.Context, conn *quic.Conn, token, advert string) (io.ReadWriteCloser, error) {
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open control stream: %w", err)
	}
	if err := wire.Write(st, &wire.Message{RelayHello: &wire.RelayHello{Token: token, Addr: advert}}); err != nil {
		return nil, err
	}
	_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := wire.Read(st)
	if err != nil {
		return nil, fmt.Errorf("read welcome: %w", err)
	}
	_ = st.SetReadDeadline(time.Time{})
	if m.Error != nil {
		return nil, m.Error
	}
	if m.Welcome == nil {
		return nil, fmt.Errorf("control answered hello with something other than welcome")
	}
	return streamLink{st, conn}, nil
}

func (r *relayRole) close() {
	if r.rel != nil {
		_ = r.rel.Close()
	}
	closeAll(r.udp)
	if r.store != nil {
		_ = r.store.Close()
	}
}

// clientRole is a client with the sources and destinations of its file.
type clientRole struct {
	cfg           *config.Client
	c             *client.Client
	direct, relay *net.UDPConn
}

func newClient(cfg *config.Client, opts Options, log *slog.Logger) (_ role, err error) {
	r := &clientRole{cfg: cfg}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	srvTLS, err := serverTLS(cfg.ServerAddr, cfg.ServerCAs)
	if err != nil {
		return nil, err
	}
	if r.direct, err = listenUDP(cfg.DirectAddr); err != nil {
		return nil, err
	}
	if r.relay, err = listenUDP(":0"); err != nil {
		return nil, err
	}
	r.c, err = client.New(client.Config{
		Token: cfg.TokenValue, ServerAddr: cfg.ServerAddr, ServerTLS: srvTLS,
		DirectConn: r.direct, RelayConn: r.relay, PortMapping: cfg.PortMapping == "auto",
		Version: opts.Version, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	for name, d := range cfg.Destinations {
		if err := r.c.AddDestination(name, client.DestinationConfig{
			Addr: d.Addr, Route: d.Route, ProxyProto: d.ProxyProtoVersion, FileServerRoot: d.FileServerRoot,
		}); err != nil {
			return nil, err
		}
	}
	for name, s := range cfg.Sources {
		if err := r.c.AddSource(name, client.SourceConfig{Addr: s.Addr, Route: s.Route}); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *clientRole) name() string                    { return "client" }
func (r *clientRole) statusAddr() string              { return r.cfg.StatusAddr }
func (r *clientRole) status() any                     { return r.c.Status() }
func (r *clientRole) serve(ctx context.Context) error { return r.c.Run(ctx) }
func (r *clientRole) close()                          { closeAll(r.direct, r.relay) }
