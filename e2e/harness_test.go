// Package e2e runs the real connetd binary as separate processes on
// loopback, with config files in connet's format, and checks what a user
// would see: bytes arriving intact, on the route asked for.
package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/syncbuf"
	"github.com/connetd/connetd/internal/testbin"
	"github.com/connetd/connetd/internal/testcert"
	"github.com/connetd/connetd/internal/testport"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := testbin.Build("..", "./cmd/connetd", "./cmd/connetctl", "./e2e/echod")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// proc is a child process whose output is kept for the test log.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	err  error
}

func startProc(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	return startCmd(t, name, cmd)
}

// startCmd starts a prepared command (environment, extra files) as a proc.
func startCmd(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	// Keep daemons off any system bus this machine has; D-Bus tests point
	// them at a private bus (a later entry wins).
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append([]string{"DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/connetd-e2e"}, cmd.Env...)
	p := &proc{name: name, out: &syncbuf.Buffer{}, done: make(chan struct{}), cmd: cmd}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits; a daemon must exit 0 on SIGTERM.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 10s of SIGTERM", p.name)
		return
	}
	if p.err != nil && p.isConnetd() {
		t.Errorf("%s exited with %v after SIGTERM", p.name, p.err)
	}
}

// isConnetd reports whether the process runs connetd (maybe through a
// wrapper such as sh or systemd-socket-activate).
func (p *proc) isConnetd() bool {
	for _, a := range p.cmd.Args {
		if filepath.Base(a) == "connetd" {
			return true
		}
	}
	return false
}

// waitLog waits until the output contains s.
func (p *proc) waitLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.out.String(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not log %q within %s", p.name, s, timeout)
}

// freePort returns a loopback port free for both TCP and UDP right now.
func freePort(t *testing.T) int { return testport.Free(t) }

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// writeCert makes a self-signed certificate for localhost and 127.0.0.1
// as cert.pem and key.pem in dir.
func writeCert(t *testing.T, dir string) {
	t.Helper()
	if _, err := testcert.Write(dir); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// clientStatus is the part of a client's status JSON the tests read.
type clientStatus struct {
	Control string `json:"control"`
	Sources []struct {
		Name  string `json:"name"`
		Peers []struct {
			Path string `json:"path"`
		} `json:"peers"`
	} `json:"sources"`
}

func getJSON(addr string, v any) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// sourcePath returns the path the client's source name currently uses.
func sourcePath(statusAddr, name string) string {
	var st clientStatus
	if err := getJSON(statusAddr, &st); err != nil {
		return ""
	}
	for _, s := range st.Sources {
		if s.Name == name && len(s.Peers) > 0 {
			return s.Peers[0].Path
		}
	}
	return ""
}

// waitPath waits until source name of the client at statusAddr uses path.
func waitPath(t *testing.T, statusAddr, name, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	got := ""
	for time.Now().Before(deadline) {
		if got = sourcePath(statusAddr, name); got == path {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("source %s: path %q, want %q after %s", name, got, path, timeout)
}

func readFileBytes(dir, name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }

func netDial(a string) (net.Conn, error) { return net.DialTimeout("tcp", a, time.Second) }
