// Package daemon owns a running connetd: it builds the role the
// configuration asks for (server, control, relay or client) on sockets it
// binds or receives from systemd, serves its status, keeps systemd informed
// (readiness, status, watchdog, reload) and applies configuration changes.
package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/changes"
	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/metrics"
	"github.com/connetd/connetd/statushttp"
	"github.com/connetd/connetd/store"
)

// Options are the parts of a run that do not come from the config file.
type Options struct {
	Version string
	Stderr  io.Writer // log destination when not the journal; os.Stderr when nil
	// Args are the command-line arguments the configuration came from; a
	// reload parses them again so flags keep overriding the file.
	Args []string
}

// readyTimeout bounds how long a client waits for control before telling
// systemd it is up anyway (with a STATUS= saying it is still trying), so a
// client started before its server does not fail to start.
const readyTimeout = 10 * time.Second

// ErrNotReloadable is returned for a reload that would change the role.
var ErrNotReloadable = errors.New("configuration change cannot be applied by a reload")

// Daemon is one running connetd.
type Daemon struct {
	opts   Options
	log    *slog.Logger
	level  *slog.LevelVar
	lst    *listeners
	notify *notifier
	tune   bool

	store    *store.Store
	resetKey *quic.StatelessResetKey

	mu      sync.Mutex // serializes reloads and run-time changes
	file    *config.File
	overlay *overlay
	role    role

	// stateMu is not mu: a reload holds mu throughout, and its
	// "reloading" must be visible meanwhile.
	stateMu sync.Mutex
	state   string

	bufMu sync.Mutex
	bufs  map[string]BufferSize // by socket name

	// changed is the daemon's one change notification: the role's own
	// (merged by watch) and the daemon's state, endpoints and tokens.
	changed changes.Signal
}

// role is one configured role, with its sockets open.
type role interface {
	name() string
	serve(ctx context.Context) error // until ctx ends
	ready() <-chan struct{}          // closed once the role is serving
	// snapshot is the role's part of a Snapshot: its status and summary.
	snapshot() Snapshot
	// summary is snapshot's Summary, for STATUS=, which is rebuilt at
	// every change: cheaper than a snapshot where the status is large.
	summary() string
	// changes returns fresh channels, each closed at the next change of
	// what snapshot reports; take new ones after a wake-up.
	changes() []<-chan struct{}
	// alive returns once the role's main lock could be taken: the
	// watchdog's proof of life, much cheaper than a snapshot.
	alive()
	statusAddr() string
	metricsAddr() string
	// apply makes the running role match f (same role); it returns notes on
	// changes that need a restart.
	apply(f *config.File) ([]string, error)
	close()
}

// New builds the role of f: sockets are bound (or taken from systemd) here,
// so errors such as a port in use come back before Run.
func New(f *config.File, opts Options) (*Daemon, error) {
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	// We report buffer sizes ourselves, with advice that fits a service.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	d := &Daemon{opts: opts, level: new(slog.LevelVar), file: f, bufs: map[string]BufferSize{}}
	d.level.Set(parseLevel(f.LogLevel))
	if d.log = journalLogger(d.level); d.log == nil {
		d.log = NewLogger(f.LogFormat, d.level, opts.Stderr)
	}
	d.notify = &notifier{log: d.log}
	d.tune = f.TuneUDPBuffers == nil || *f.TuneUDPBuffers
	d.lst = takeListeners(d.log)
	if err := d.openState(); err != nil {
		return nil, err
	}
	e := effective(f, d.overlay)
	var err error
	switch {
	case f.Server != nil:
		d.role, err = newServer(d, e.Server)
	case f.Control != nil:
		d.role, err = newControl(d, e.Control)
	case f.Relay != nil:
		d.role, err = newRelay(d, e.Relay)
	case f.Client != nil:
		d.role, err = newClient(d, e.Client)
	default:
		err = fmt.Errorf("%s: no role table", f.Path)
	}
	if err != nil {
		d.store.Close()
		return nil, err
	}
	d.log = d.log.With("role", d.role.name())
	d.state = "starting"
	d.logWarnings(f, nil)
	return d, nil
}

// logWarnings logs what loads but is unsafe or likely not meant, once: at
// start, and at a reload only what the previous configuration did not have.
func (d *Daemon) logWarnings(f, prev *config.File) {
	var seen []string
	if prev != nil {
		for _, w := range prev.Warnings {
			seen = append(seen, w.Error())
		}
	}
	for _, w := range f.Warnings {
		if !slices.Contains(seen, w.Error()) {
			d.log.Warn("configuration warning", "warning", w.Error())
		}
	}
	if prev == nil {
		for _, n := range f.Notices {
			d.log.Info("configuration note", "note", n.Error())
		}
	}
}

// openState opens the role's store: identity, stateless reset key and the
// changes made at run time.
func (d *Daemon) openState() error {
	dir, err := store.Dir(stateDir(d.file), roleOf(d.file))
	if err != nil {
		return err
	}
	if d.store, err = store.Open(dir); err != nil {
		return err
	}
	secret, err := d.store.Secret("stateless-reset-key", 32)
	if err == nil {
		d.resetKey = new(quic.StatelessResetKey)
		copy(d.resetKey[:], secret)
		d.overlay, err = loadOverlay(d.store)
	}
	if err != nil {
		d.store.Close()
		return err
	}
	return nil
}

// Logger is the daemon's logger.
func (d *Daemon) Logger() *slog.Logger { return d.log }

// udp opens (or takes from systemd) a UDP socket and tunes its buffers.
func (d *Daemon) udp(fdName, addr string) (*net.UDPConn, error) {
	conn, err := d.lst.udp(fdName, addr)
	if err != nil {
		return nil, err
	}
	got := tuneUDP(conn, d.tune, d.log)
	d.bufMu.Lock()
	d.bufs[fdName] = got
	d.bufMu.Unlock()
	return conn, nil
}

// Run serves until ctx ends. A normal stop returns nil.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.store.Close()
	defer d.role.close()
	var ln net.Listener
	addr := d.role.statusAddr()
	if addr != "" {
		var err error
		if ln, err = d.lst.tcp(fdStatus, addr); err != nil {
			return fmt.Errorf("status: %w", err)
		}
	}
	var mln net.Listener
	maddr := d.role.metricsAddr()
	if maddr != "" {
		var err error
		if mln, err = d.lst.tcp(fdMetrics, maddr); err != nil {
			if ln != nil {
				ln.Close()
			}
			return fmt.Errorf("metrics: %w", err)
		}
	}
	if names := d.lst.unused(); len(names) > 0 {
		d.log.Warn("sockets passed by systemd match no configured listener", "fd_names", names)
		d.lst.dropUnused(d.notify, names)
	}
	// Before serving: a crash from now on keeps the sockets too.
	d.lst.storeAll(d.notify)
	// When the role's serve loop ends, even without an error, the daemon
	// ends; the other goroutines end with the group's context, and the
	// last one tells systemd we are stopping as soon as it ends, whether
	// the caller stopped us or something failed.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { defer cancel(); return d.role.serve(gctx) })
	if ln != nil {
		g.Go(func() error { return statushttp.Serve(gctx, ln, addr, d.Status, d.log) })
	}
	if mln != nil {
		g.Go(func() error { return metrics.Serve(gctx, mln, maddr, d.metricsState, d.log) })
	}
	g.Go(func() error { d.watch(gctx); return nil })
	g.Go(func() error { d.announceReady(gctx); return nil })
	g.Go(func() error { d.notify.statusLoop(gctx, d.Changed, d.Summary); return nil })
	g.Go(func() error { d.notify.watchdogLoop(gctx, d.role.alive); return nil })
	g.Go(func() error {
		<-gctx.Done()
		d.setState("stopping")
		d.notify.stopping()
		return nil
	})
	setGCPercent(d.log)
	setMemoryLimit(d.log, "/")
	d.log.Info("connetd started", "version", d.opts.Version)
	if err := g.Wait(); err != nil {
		return err
	}
	d.log.Info("connetd stopped")
	return nil
}

func (d *Daemon) announceReady(ctx context.Context) {
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-d.role.ready():
	case <-t.C:
		d.log.Warn("not registered with control yet; reporting ready and retrying in the background")
	case <-ctx.Done():
		return
	}
	d.setState("running")
	d.notify.ready(d.role.snapshot().Summary)
}

func (d *Daemon) setState(s string) {
	d.stateMu.Lock()
	d.state = s
	d.stateMu.Unlock()
	d.changed.Notify()
}

// State is starting, running, reloading or stopping.
func (d *Daemon) State() string {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	return d.state
}

// Changed is closed at the next change of what Snapshot or Endpoints
// report: the role's data plane, the daemon's state, endpoints and tokens.
// Take the channel before reading the state and a new one after each
// wake-up, so no change falls between the two.
func (d *Daemon) Changed() <-chan struct{} { return d.changed.C() }

// Snapshot is the daemon's state now.
func (d *Daemon) Snapshot() Snapshot {
	s := d.role.snapshot()
	s.Role, s.Version, s.State = d.role.name(), d.opts.Version, d.State()
	d.bufMu.Lock()
	s.UDPBuffers = maps.Clone(d.bufs)
	d.bufMu.Unlock()
	return s
}

// Status returns what the status endpoint serves.
func (d *Daemon) Status() any { return d.Snapshot() }

// metricsState is what a scrape reads: the snapshot's status parts.
func (d *Daemon) metricsState() metrics.State {
	s := d.Snapshot()
	bufs := make(map[string]metrics.UDPBuffer, len(s.UDPBuffers))
	for name, b := range s.UDPBuffers {
		bufs[name] = metrics.UDPBuffer{Receive: b.Receive, Send: b.Send}
	}
	return metrics.State{Role: s.Role, Version: s.Version, Client: s.Client, Control: s.Control, Relay: s.Relay, UDPBuffers: bufs}
}

// Summary is the one-line state (as in STATUS=).
func (d *Daemon) Summary() string { return d.role.summary() }

// loadConfig reads the configuration again, as at start-up.
func (d *Daemon) loadConfig() (*config.File, error) {
	if d.opts.Args != nil {
		return config.ParseCommandLine(d.opts.Args)
	}
	if d.file.Path == "" {
		return nil, errors.New("configuration came from flags only; nothing to reload")
	}
	return config.Load(d.file.Path)
}

// Reload re-reads the configuration and applies what changed, without
// dropping flows of endpoints that did not change. An invalid configuration
// is rejected and the running one stays in force.
func (d *Daemon) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	prev := d.State()
	d.setState("reloading")
	d.notify.reloading()
	defer func() {
		d.setState(prev)
		d.notify.ready(d.Summary())
	}()
	nf, err := d.loadConfig()
	if err != nil {
		d.log.Error("reload rejected; the running configuration stays in force", msgid.ReloadRejected.Attr(), "err", err)
		return err
	}
	if err := d.applyLocked(nf); err != nil {
		d.log.Error("reload rejected; the running configuration stays in force", msgid.ReloadRejected.Attr(), "err", err)
		return err
	}
	d.log.Info("configuration reloaded", msgid.ReloadApplied.Attr())
	return nil
}

func (d *Daemon) applyLocked(nf *config.File) error {
	if roleOf(nf) != roleOf(d.file) {
		return fmt.Errorf("%w: the role changes from %s to %s; restart instead", ErrNotReloadable, roleOf(d.file), roleOf(nf))
	}
	notes, err := d.role.apply(effective(nf, d.overlay))
	if err != nil {
		// Put back what the old configuration had, as far as it was undone.
		_, _ = d.role.apply(effective(d.file, d.overlay))
		return err
	}
	for _, n := range notes {
		d.log.Warn("changed setting needs a restart to take effect", "setting", n)
	}
	if nf.LogFormat != d.file.LogFormat {
		d.log.Warn("changed setting needs a restart to take effect", "setting", "log-format")
	}
	d.level.Set(parseLevel(nf.LogLevel))
	d.logWarnings(nf, d.file)
	d.file = nf
	return nil
}

func roleOf(f *config.File) string {
	switch {
	case f.Server != nil:
		return "server"
	case f.Control != nil:
		return "control"
	case f.Relay != nil:
		return "relay"
	case f.Client != nil:
		return "client"
	}
	return ""
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
// name, when set, is the name its certificate must carry (connet's
// server-name, control-name); when empty, the dialer puts in the host of
// each control address it dials, as each node of a list has its own.
func serverTLS(casFile, name string) (*tls.Config, error) {
	pool, err := loadCAs(casFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS13}, nil
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
