package natlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/testbin"
	"github.com/connetd/connetd/internal/testcert"
	"github.com/vishvananda/netlink"
)

var binDir string

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		dir, err := testbin.Build("..", "./cmd/connetd", "./cmd/connetctl", "./natlab/cmd/natpmpd")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		binDir = dir
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// proc is a process running in a namespace; its output goes to a file
// shown when the test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (l *lab) start(t *testing.T, ns, name, logDir string, args ...string) *proc {
	t.Helper()
	return l.startWith(t, ns, name, logDir, nil, nil, args...)
}

// stop sends SIGTERM (ip netns exec execs the command, so the signal
// reaches the daemon) and waits; the daemon must exit 0.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil && strings.Contains(p.name, "connetd") {
			t.Errorf("%s exited with %v after SIGTERM", p.name, p.err)
		}
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 10s of SIGTERM", p.name)
	}
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// httpIn is an HTTP client whose connections are made inside ns.
func httpIn(ns string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialIn(ns, addr, 5*time.Second)
		},
	}}
}

// clientStatus is the part of a client's status the lab reads.
type clientStatus struct {
	NAT          string           `json:"nat"`
	OpenTTL      int              `json:"open_ttl"`
	PortMapping  string           `json:"port_mapping"`
	Sources      []endpointStatus `json:"sources"`
	Destinations []endpointStatus `json:"destinations"`
	FlowMoves    struct {
		Counts     map[string]int64 `json:"counts"`
		MaxStallMS int64            `json:"max_stall_ms"`
	} `json:"flow_moves"`
}

type endpointStatus struct {
	Proto   string `json:"proto"`
	BytesIn int64  `json:"bytes_in"`
	UDP     *struct {
		Flows           int64 `json:"flows"`
		FlowsRefused    int64 `json:"flows_refused"`
		DroppedOversize int64 `json:"dropped_oversize"`
		DroppedOther    int64 `json:"dropped_other"`
		MaxPayload      int   `json:"max_payload"`
	} `json:"udp"`
	Peers []struct {
		Path           string `json:"path"`
		NAT            string `json:"nat"`
		PunchAttempts  int    `json:"punch_attempts"`
		PairsTried     int    `json:"pairs_tried"`
		TimeToDirectMs int64  `json:"time_to_direct_ms"`
		ByPath         []struct {
			Path     string `json:"path"`
			BytesIn  int64  `json:"bytes_in"`
			BytesOut int64  `json:"bytes_out"`
		} `json:"bytes_by_path"`
	} `json:"peers"`
}

func status(ns string) (clientStatus, error) {
	var st clientStatus
	resp, err := httpIn(ns, 2*time.Second).Get("http://127.0.0.1:19182/")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// fetch downloads the payload through the source in ns, at most rate bytes
// per second when rate > 0, and returns the hex sha256 of what arrived.
func fetch(ns, file string, rate int, timeout time.Duration) (string, int64, error) {
	resp, err := httpIn(ns, timeout).Get("http://127.0.0.1:8000/" + file)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("status %s", resp.Status)
	}
	h := sha256.New()
	var r io.Reader = resp.Body
	var n int64
	buf := make([]byte, 64<<10)
	start := time.Now()
	for {
		m, err := r.Read(buf)
		h.Write(buf[:m])
		n += int64(m)
		if rate > 0 {
			if ahead := time.Duration(n)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), n, nil
		}
		if err != nil {
			return hex.EncodeToString(h.Sum(nil)), n, err
		}
	}
}

// writeCert makes the server's certificate, valid for its lab address.
func writeCert(t *testing.T, dir string) {
	t.Helper()
	if _, err := testcert.Write(dir, serverAddr); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// payload writes size random bytes to dir/www/name and returns their
// sha256.
func payload(t *testing.T, dir, name string, size int) string {
	b := make([]byte, size)
	_, _ = rand.Read(b)
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "www"), name, string(b))
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ttdText is a row's time to direct as the tables print it (-1: never).
func ttdText(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(10 * time.Millisecond).String()
}

// shaText is a row's payload check as the tables print it.
func shaText(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISMATCH"
}

// logBuf collects the matrix lines for the summary.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuf) add(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, fmt.Sprintf(format, args...))
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out bytes.Buffer
	for _, l := range b.lines {
		out.WriteString(l + "\n")
	}
	return out.String()
}

// flushConntrack empties the connection tracking tables of the routers a
// pairing crosses. The sites are shared by the rows, and their clients use
// the same ports row after row: an entry left by an earlier row (a probe
// that reached a NAT before its side had opened lives on for 30 s, an
// answered flow for minutes) could take a later row's tuple, which then
// gets another public port and fails to punch, a failure of the lab, not
// of the pairing.
func (l *lab) flushConntrack(t *testing.T, p pairing) {
	t.Helper()
	nss := []string{l.core}
	for _, s := range []*site{p.src, p.dst} {
		for _, r := range []string{s.router, s.cgn} {
			if r != "" && !slices.Contains(nss, r) {
				nss = append(nss, r)
			}
		}
	}
	for _, ns := range nss {
		if err := inNS(ns, func() error {
			return errors.Join(netlink.ConntrackTableFlush(netlink.ConntrackTable), netlink.ConntrackTableFlush(netlink.ConntrackExpectTable))
		}); err != nil {
			t.Fatalf("flush conntrack in %s: %v", ns, err)
		}
	}
}
