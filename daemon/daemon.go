// Package daemon owns a running connetd: it builds the role the
// configuration asks for (server, control, relay or client), opens its
// sockets, serves its status and runs it until the context ends.
package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/statushttp"
	"github.com/connetd/connetd/store"
)

// Options are the parts of a run that do not come from the config file.
type Options struct {
	Version string
	Stderr  io.Writer // log destination; os.Stderr when nil
}

// Run runs the role of f until ctx ends. A normal stop returns nil.
func Run(ctx context.Context, f *config.File, opts Options) error {
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	log := NewLogger(f.LogLevel, f.LogFormat, opts.Stderr)
	var r role
	var err error
	switch {
	case f.Server != nil:
		r, err = newServer(f.Server, opts, log)
	case f.Control != nil:
		r, err = newControl(f.Control, opts, log)
	case f.Relay != nil:
		r, err = newRelay(f.Relay, opts, log)
	case f.Client != nil:
		r, err = newClient(f.Client, opts, log)
	default:
		return fmt.Errorf("%s: no role table", f.Path)
	}
	if err != nil {
		return err
	}
	defer r.close()
	return run(ctx, r, log)
}

// role is one configured role, with its sockets open.
type role interface {
	name() string
	serve(ctx context.Context) error // until ctx ends
	status() any
	statusAddr() string
	close()
}

func run(ctx context.Context, r role, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log = log.With("role", r.name())
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if addr := r.statusAddr(); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen status %s: %w", addr, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := statushttp.Serve(ctx, ln, addr, r.status, log); err != nil {
				errc <- err
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- r.serve(ctx)
	}()
	log.Info("connetd started")
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	if err != nil {
		return err
	}
	log.Info("connetd stopped")
	return nil
}

func listenUDP(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("listen udp %s: %w", addr, err)
	}
	return conn, nil
}

// loadCAs reads PEM certificates to trust; an empty path means the system roots.
func loadCAs(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// serverTLS is how clients and relays verify the control server.
func serverTLS(addr, casFile string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", addr, err)
	}
	pool, err := loadCAs(casFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS13}, nil
}

// openStore opens the role's state database and its stateless reset key,
// which lets peers of a restarted server learn at once that their old
// connection is gone.
func openStore(dir, roleName string) (*store.Store, *quic.StatelessResetKey, error) {
	d, err := store.Dir(dir, roleName)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(d)
	if err != nil {
		return nil, nil, err
	}
	secret, err := st.Secret("stateless-reset-key", 32)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	var key quic.StatelessResetKey
	copy(key[:], secret)
	return st, &key, nil
}

// storedIdentity loads the identity kept under name, creating it on first
// use. The certificate is stored too: peers pin its hash, so it must stay
// byte-for-byte the same across restarts.
func storedIdentity(st *store.Store, name string) (*identity.Identity, error) {
	key, err := st.Key(name + "-key")
	if err != nil {
		return nil, err
	}
	der, err := st.Get("identity", name+"-cert")
	if err != nil {
		return nil, fmt.Errorf("load %s certificate: %w", name, err)
	}
	if der != nil {
		if id, err := identity.FromDER(der, key); err == nil {
			if pub, ok := id.Cert.Leaf.PublicKey.(ed25519.PublicKey); ok && pub.Equal(key.Public()) {
				return id, nil
			}
		}
	}
	id, err := identity.FromKey("connetd-"+name, key)
	if err != nil {
		return nil, err
	}
	if err := st.Put("identity", name+"-cert", id.DER); err != nil {
		return nil, fmt.Errorf("store %s certificate: %w", name, err)
	}
	return id, nil
}
