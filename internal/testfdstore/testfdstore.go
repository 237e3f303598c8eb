// Package testfdstore plays systemd's file descriptor store for tests that
// run the daemon as systemd would: a notify socket that keeps what
// FDSTORE=1 messages carry, one socket per FDNAME, and hands duplicates
// back for LISTEN_FDS on the next start.
package testfdstore

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Store is a notify socket with the sockets stored through it.
type Store struct {
	path  string
	mu    sync.Mutex
	fds   map[string]int
	order []string
}

// New listens on a notify socket in the test's temporary directory until
// the test ends, and closes what it stored then.
func New(t testing.TB) *Store {
	t.Helper()
	s := &Store{path: filepath.Join(t.TempDir(), "notify"), fds: map[string]int{}}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*16))
		for {
			n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			var fds []int
			if scms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, scm := range scms {
					if got, err := unix.ParseUnixRights(&scm); err == nil {
						fds = append(fds, got...)
					}
				}
			}
			s.take(string(buf[:n]), fds)
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, fd := range s.fds {
			unix.Close(fd)
		}
	})
	return s
}

// Path is the socket's path, for NOTIFY_SOCKET.
func (s *Store) Path() string { return s.path }

func (s *Store) take(msg string, fds []int) {
	name, store := "stored", false
	for _, line := range strings.Split(msg, "\n") {
		if line == "FDSTORE=1" {
			store = true
		}
		if v, ok := strings.CutPrefix(line, "FDNAME="); ok {
			name = v
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fd := range fds {
		if _, have := s.fds[name]; !store || have { // systemd keeps one of each socket
			unix.Close(fd)
			continue
		}
		s.fds[name] = fd
		s.order = append(s.order, name)
	}
}

// Passed returns duplicates of the stored sockets and their names, in the
// order stored, for LISTEN_FDS and LISTEN_FDNAMES.
func (s *Store) Passed(t testing.TB) ([]*os.File, []string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var files []*os.File
	for _, name := range s.order {
		fd, err := unix.Dup(s.fds[name])
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, os.NewFile(uintptr(fd), name))
	}
	return files, append([]string(nil), s.order...)
}

// Names lists the stored sockets' names.
func (s *Store) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}
