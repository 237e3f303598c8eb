package daemon

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// The file descriptor store: the daemon hands its long-lived sockets to
// systemd (sd_notify FDSTORE=1, FileDescriptorStoreMax= in the unit), and
// systemd passes them back to the next process of the unit the way it
// passes socket-activated ones (LISTEN_FDS, LISTEN_FDNAMES), under the same
// names. A restarted client keeps its UDP ports, and so the mappings in its
// NAT and the peers' idea of where it is; a restarted server keeps its
// ports and the datagrams that arrive while no process reads them.

// fdClientRelay names a client's relay socket: ephemeral at first start,
// kept across restarts through the store.
const fdClientRelay = "client-relay"

// storable are the sockets handed to the store. Sources are not: an
// endpoint removed by a reload would leave its socket behind.
var storable = []string{fdControl, fdRelays, fdRelay, fdDirect, fdClientRelay, fdStatus, fdMetrics}

// storedSocket is a socket the daemon uses, to be handed to the store.
type storedSocket struct {
	name string
	conn syscall.Conn
}

// keep records a socket handed out under name for the store.
func (l *listeners) keep(name string, c syscall.Conn) {
	if !slices.Contains(storable, name) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kept = append(l.kept, storedSocket{name: name, conn: c})
}

// storeAll sends every kept socket to systemd's store, one message per
// name. systemd ignores a socket it already holds, so a restarted daemon
// sends again what it was given back. Without NOTIFY_SOCKET it does
// nothing.
func (l *listeners) storeAll(n *notifier) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	l.mu.Lock()
	kept := slices.Clone(l.kept)
	l.mu.Unlock()
	for _, s := range kept {
		if err := n.storeFD(s.name, s.conn); err != nil {
			l.log.Warn("could not hand a socket to systemd's file descriptor store; a restart will bind it anew",
				"fd_name", s.name, "err", err)
		}
	}
}

// dropUnused takes out of the store the sockets of names nothing uses any
// more (the configuration dropped a listener): they would come back at
// every restart. Sockets from socket units are not in the store and stay.
func (l *listeners) dropUnused(n *notifier, names []string) {
	for _, name := range names {
		if slices.Contains(storable, name) {
			n.send("FDSTOREREMOVE=1", "FDNAME="+name)
		}
	}
}

// storeFD hands c's descriptor to systemd's store under name.
func (n *notifier) storeFD(name string, c syscall.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var sendErr error
	err = raw.Control(func(fd uintptr) {
		n.mu.Lock()
		defer n.mu.Unlock()
		sendErr = sdNotifyWithFDs("FDSTORE=1\nFDNAME="+name, int(fd))
	})
	if err != nil {
		return err
	}
	return sendErr
}

// errNoNotifySocket: not run by systemd (or NOTIFY_SOCKET unset).
var errNoNotifySocket = errors.New("NOTIFY_SOCKET not set")

// sdNotifyWithFDs is sd_pid_notify_with_fds: state with fds attached
// (SCM_RIGHTS), which go-systemd's SdNotify cannot send.
func sdNotifyWithFDs(state string, fds ...int) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return errNoNotifySocket
	}
	// An unconnected socket: Go's UnixConn sends no ancillary data on a
	// connected datagram socket. x/sys/unix maps a leading @ to the
	// abstract namespace.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	defer unix.Close(fd)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(fd, []byte(state), oob, &unix.SockaddrUnix{Name: path}, 0); err != nil {
		return fmt.Errorf("notify socket %s: %w", path, err)
	}
	return nil
}

// sameSocket reports whether a and b are descriptors of one socket.
func sameSocket(a, b *os.File) bool {
	sa, okA := fstat(a)
	sb, okB := fstat(b)
	return okA && okB && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// fstat reads f's inode without f.Fd, which would make the socket
// blocking (the flag is shared with the descriptor the daemon uses).
func fstat(f *os.File) (unix.Stat_t, bool) {
	var st unix.Stat_t
	raw, err := f.SyscallConn()
	if err != nil {
		return st, false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		return st, false
	}
	return st, true
}
