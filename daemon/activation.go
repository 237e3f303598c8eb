package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
)

// Names of socket-activated file descriptors (FileDescriptorName= in the
// socket units): one per listener connetd has.
const (
	fdControl = "control" // UDP: clients to control (server addr, control clients-addr)
	fdRelays  = "relays"  // UDP: relays to control (control relays-addr)
	fdRelay   = "relay"   // UDP: the relay (server relay-addr, relay addr)
	fdDirect  = "direct"  // UDP: a client's direct socket
	fdStatus  = "status"  // TCP: status-addr
	fdMetrics = "metrics" // TCP: metrics-addr
)

// fdSource names a source's TCP listener: "source-NAME".
func fdSource(name string) string { return "source-" + name }

// listeners hands out the sockets systemd passed (LISTEN_FDS), by name, and
// binds the configured address itself for anything not passed.
type listeners struct {
	mu    sync.Mutex
	files map[string][]*os.File
	log   *slog.Logger
	kept  []storedSocket // handed out; for the file descriptor store
}

// takeListeners reads (and consumes) the LISTEN_* environment; call once.
func takeListeners(log *slog.Logger) *listeners {
	l := &listeners{files: activation.FilesWithNames(), log: log}
	for name, fs := range l.files {
		log.Debug("socket passed by systemd", "fd_name", name, "count", len(fs))
	}
	return l
}

func (l *listeners) take(name string) *os.File {
	l.mu.Lock()
	defer l.mu.Unlock()
	fs := l.files[name]
	if len(fs) == 0 {
		return nil
	}
	// A socket both from a socket unit and from the file descriptor store
	// comes twice under its name: keep one.
	rest := fs[:0:0]
	for _, f := range fs[1:] {
		if sameSocket(fs[0], f) {
			f.Close()
			continue
		}
		rest = append(rest, f)
	}
	l.files[name] = rest
	return fs[0]
}

// udp returns the activated socket called name, or binds addr.
func (l *listeners) udp(name, addr string) (*net.UDPConn, error) {
	if f := l.take(name); f != nil {
		defer f.Close()
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return nil, fmt.Errorf("socket %q from systemd: %w", name, err)
		}
		u, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			return nil, fmt.Errorf("socket %q from systemd is not a UDP socket", name)
		}
		l.log.Info("using socket from systemd", "fd_name", name, "addr", u.LocalAddr().String())
		l.keep(name, u)
		return u, nil
	}
	u, err := listenUDP(addr)
	if err == nil {
		l.keep(name, u)
	}
	return u, err
}

// tcp returns the activated listener called name, or listens on addr.
func (l *listeners) tcp(name, addr string) (net.Listener, error) {
	if f := l.take(name); f != nil {
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("socket %q from systemd: %w", name, err)
		}
		l.log.Info("using socket from systemd", "fd_name", name, "addr", ln.Addr().String())
		if sc, ok := ln.(syscall.Conn); ok {
			l.keep(name, sc)
		}
		return ln, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if sc, ok := ln.(syscall.Conn); ok {
		l.keep(name, sc)
	}
	return ln, nil
}

// unused lists passed sockets nothing claimed, for a warning: usually a
// FileDescriptorName= that matches no configured listener.
func (l *listeners) unused() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for name, fs := range l.files {
		if len(fs) > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
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
