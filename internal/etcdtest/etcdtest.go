// Package etcdtest runs a real etcd cluster (Debian's etcd-server) for
// tests: n members on loopback, random ports, temporary data directories,
// fast elections, and members that a test can stop, kill and restart.
package etcdtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/testenv"
)

// startTimeout bounds how long a cluster may take to become healthy.
const startTimeout = 20 * time.Second

// Cluster is a running etcd cluster.
type Cluster struct {
	Members []*Member
	// Dir holds the members' data directories and, with WithTLS, the
	// certificate files.
	Dir string
	// CAFile, ClientCertFile and ClientKeyFile are set with WithTLS.
	CAFile, ClientCertFile, ClientKeyFile string

	bin      string
	opts     options
	tls      *tlsFiles
	clientTC *tls.Config
}

// Member is one etcd process.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	DataDir   string

	c    *Cluster
	args []string
	out  *lockedBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

type options struct {
	tls              bool
	progressInterval time.Duration
}

// Option changes how Start sets up the cluster.
type Option func(*options)

// WithTLS makes clients use https with client-certificate authentication.
// Cluster.ClientTLS gives a matching client configuration; the files are
// in the cluster's directory (CAFile, ClientCertFile, ClientKeyFile).
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithProgressNotifyInterval sets how often etcd sends progress
// notifications to quiet watches that asked for them (etcd's default is
// 10 minutes).
func WithProgressNotifyInterval(d time.Duration) Option {
	return func(o *options) { o.progressInterval = d }
}

// Start runs an n-member cluster and waits until every member is healthy;
// t.Cleanup stops it. It skips (fails under CI) without etcd.
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	bin := testenv.RequireTool(t, "etcd", "etcd-server")
	var o options
	for _, f := range opts {
		f(&o)
	}
	base := t.TempDir()
	var tf *tlsFiles
	if o.tls {
		var err error
		if tf, err = writeTLSFiles(base); err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
	}
	// Free ports are found by listening on :0 and closing, so another
	// process may take one before etcd binds it: try again with new ones.
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		c := &Cluster{Dir: filepath.Join(base, fmt.Sprintf("try%d", attempt)), bin: bin, opts: o, tls: tf}
		if tf != nil {
			c.CAFile, c.ClientCertFile, c.ClientKeyFile = tf.ca, tf.clientCert, tf.clientKey
			c.clientTC = tf.clientConfig
		}
		err := c.start(n)
		if err == nil {
			t.Cleanup(func() {
				if t.Failed() {
					c.logOutput(t)
				}
				c.stopAll()
			})
			return c
		}
		lastErr = err
		c.logOutput(t)
		c.stopAll()
		t.Logf("etcdtest: start attempt %d: %v", attempt, err)
	}
	t.Fatalf("etcdtest: cluster did not start: %v", lastErr)
	return nil
}

func (c *Cluster) start(n int) error {
	ports, err := freePorts(2 * n)
	if err != nil {
		return err
	}
	scheme := "http"
	if c.tls != nil {
		scheme = "https"
	}
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			c:         c,
			out:       &lockedBuffer{},
		}
		m.DataDir = filepath.Join(c.Dir, m.Name)
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", m.DataDir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(c.Dir),
			// Fast elections, so quorum loss and recovery tests take
			// seconds: a member notices a lost leader after 500 ms.
			"--heartbeat-interval", "50",
			"--election-timeout", "500",
			"--logger", "zap",
			"--log-outputs", "stderr",
		}
		if c.opts.progressInterval > 0 {
			m.args = append(m.args, "--experimental-watch-progress-notify-interval", c.opts.progressInterval.String())
		}
		if c.tls != nil {
			m.args = append(m.args,
				"--client-cert-auth",
				"--trusted-ca-file", c.tls.ca,
				"--cert-file", c.tls.serverCert,
				"--key-file", c.tls.serverKey)
		}
		if err := m.start(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for _, m := range c.Members {
		if err := m.waitHealthy(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// ClientTLS is a client configuration the cluster accepts (WithTLS), or
// nil.
func (c *Cluster) ClientTLS() *tls.Config {
	if c.clientTC == nil {
		return nil
	}
	return c.clientTC.Clone()
}

func (c *Cluster) stopAll() {
	var wg sync.WaitGroup
	for _, m := range c.Members {
		wg.Go(func() { _ = m.signal(syscall.SIGTERM, 10*time.Second) })
	}
	wg.Wait()
}

func (c *Cluster) logOutput(t testing.TB) {
	t.Helper()
	for _, m := range c.Members {
		out := m.out.String()
		const max = 32 << 10
		if len(out) > max {
			out = "...\n" + out[len(out)-max:]
		}
		t.Logf("etcd member %s (%s) output:\n%s", m.Name, m.ClientURL, out)
	}
}

func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return fmt.Errorf("member %s already running", m.Name)
	}
	cmd := exec.Command(m.c.bin, m.args...)
	cmd.Env = cleanEnv()
	fmt.Fprintf(m.out, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd.Stdout, cmd.Stderr = m.out, m.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("member %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	m.cmd, m.done = cmd, done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	return nil
}

// cleanEnv keeps the ETCD_* variables of whoever runs the tests from
// reconfiguring the members.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") && !strings.HasPrefix(kv, "ETCDCTL_") {
			env = append(env, kv)
		}
	}
	return env
}

// signal sends sig and waits for the exit, killing after wait.
func (m *Member) signal(sig syscall.Signal, wait time.Duration) error {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd, m.done = nil, nil
	m.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("member %s ignored %v for %v; killed", m.Name, sig, wait)
	}
}

// Stop ends the member with SIGTERM and waits for it.
func (m *Member) Stop(t testing.TB) {
	t.Helper()
	if err := m.signal(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Error(err)
	}
}

// Kill ends the member with SIGKILL and waits for it.
func (m *Member) Kill(t testing.TB) {
	t.Helper()
	_ = m.signal(syscall.SIGKILL, 10*time.Second)
}

// Start runs a stopped member again on its data directory, so it rejoins
// the cluster, and waits until it accepts client connections (not until
// it is healthy: alone, it may have no quorum).
func (m *Member) Start(t testing.TB) {
	t.Helper()
	if err := m.start(); err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	host := strings.TrimPrefix(strings.TrimPrefix(m.ClientURL, "http://"), "https://")
	for {
		conn, err := net.DialTimeout("tcp", host, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if err := m.exited(); err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("etcdtest: member %s not listening on %s after %v", m.Name, host, startTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Running reports whether the member's process is running.
func (m *Member) Running() bool { return m.exited() == nil }

func (m *Member) exited() error {
	m.mu.Lock()
	done := m.done
	m.mu.Unlock()
	if done == nil {
		return fmt.Errorf("member %s is stopped", m.Name)
	}
	select {
	case <-done:
		return fmt.Errorf("member %s exited", m.Name)
	default:
		return nil
	}
}

// WaitHealthy waits until the member says it is healthy (it has a leader
// and can commit), for at most d.
func (m *Member) WaitHealthy(t testing.TB, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := m.waitHealthy(ctx); err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
}

func (m *Member) waitHealthy(ctx context.Context) error {
	hc := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{TLSClientConfig: m.c.ClientTLS(), DisableKeepAlives: true},
	}
	var last error
	for {
		if err := m.exited(); err != nil {
			return err
		}
		last = healthy(hc, m.ClientURL)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("member %s not healthy: %w", m.Name, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func healthy(hc *http.Client, url string) error {
	resp, err := hc.Get(url + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return err
	}
	var h struct {
		Health string `json:"health"`
	}
	if err := json.Unmarshal(body, &h); err != nil || h.Health != "true" {
		return fmt.Errorf("/health: %d %q", resp.StatusCode, body)
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// lockedBuffer collects a process's output, written from exec's copying
// goroutines and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Bounded: a member that logs in a loop must not fill the memory.
	if b.b.Len() > 8<<20 {
		b.b.Next(4 << 20)
	}
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
