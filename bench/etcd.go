package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// etcdBin is Debian's etcd-server; the scale run needs a real cluster.
const etcdBin = "/usr/bin/etcd"

// etcdCluster is three etcd members on loopback, as internal/etcdtest
// starts them for tests (which needs a testing.TB the bench has not got).
type etcdCluster struct {
	members   []*proc
	clientURL []string
}

func (e *etcdCluster) stop() {
	for _, m := range e.members {
		m.stop()
	}
}

func (e *etcdCluster) pids() []int {
	var ps []int
	for _, m := range e.members {
		ps = append(ps, m.pid())
	}
	return ps
}

// startEtcd runs an n-member cluster with data in dir and waits until every
// member is healthy. Fast elections, as in the tests, so that a slow start
// does not eat the run's time budget. On error the caller still calls stop.
func startEtcd(ctx context.Context, dir string, n int) (*etcdCluster, error) {
	if _, err := os.Stat(etcdBin); err != nil {
		return nil, fmt.Errorf("the scale run needs etcd (apt install etcd-server): %w", err)
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	e := &etcdCluster{}
	var initial, peerURL []string
	for i := range n {
		e.clientURL = append(e.clientURL, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
		peerURL = append(peerURL, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]))
		initial = append(initial, fmt.Sprintf("e%d=%s", i, peerURL[i]))
	}
	for i := range n {
		name := fmt.Sprintf("e%d", i)
		p, err := startProc("etcd-"+name, filepath.Join(dir, "etcd-"+name+".log"), etcdBin,
			"--name", name,
			"--data-dir", filepath.Join(dir, "etcd-"+name),
			"--listen-client-urls", e.clientURL[i],
			"--advertise-client-urls", e.clientURL[i],
			"--listen-peer-urls", peerURL[i],
			"--initial-advertise-peer-urls", peerURL[i],
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(dir),
			"--heartbeat-interval", "50",
			"--election-timeout", "500",
			"--logger", "zap",
			"--log-outputs", "stderr")
		if err != nil {
			return e, err
		}
		e.members = append(e.members, p)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	for i, u := range e.clientURL {
		for {
			if e.members[i].exited() {
				return e, fmt.Errorf("etcd member e%d exited at start (%v); log tail:\n%s", i, e.members[i].err, e.members[i].logTail(10))
			}
			if healthy(ctx, hc, u) {
				break
			}
			select {
			case <-ctx.Done():
				return e, fmt.Errorf("etcd member e%d (%s) not healthy after 20s", i, u)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return e, nil
}

func healthy(ctx context.Context, hc *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true"
}

// etcdPost calls one of etcd's v3 JSON gateway methods.
func etcdPost(ctx context.Context, url, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("etcd %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("etcd %s: decode: %w", path, err)
	}
	return nil
}

// etcdCount is how many keys are under prefix, counted by etcd (count_only:
// the values, certificates mostly, stay there).
func etcdCount(ctx context.Context, url, prefix string) (int64, error) {
	end := []byte(prefix)
	end[len(end)-1]++ // the prefix ends in '/', never 0xff
	var out struct {
		Count string `json:"count"` // int64 as a string, as the gateway writes them
	}
	err := etcdPost(ctx, url, "/v3/kv/range", map[string]any{
		"key":        base64.StdEncoding.EncodeToString([]byte(prefix)),
		"range_end":  base64.StdEncoding.EncodeToString(end),
		"count_only": true,
	}, &out)
	if err != nil {
		return 0, err
	}
	var n int64
	if out.Count != "" {
		if _, err := fmt.Sscan(out.Count, &n); err != nil {
			return 0, fmt.Errorf("etcd count %q: %w", out.Count, err)
		}
	}
	return n, nil
}

// etcdDBSize is the member's database file size in bytes.
func etcdDBSize(ctx context.Context, url string) (int64, error) {
	var out struct {
		DBSize string `json:"dbSize"`
	}
	if err := etcdPost(ctx, url, "/v3/maintenance/status", map[string]any{}, &out); err != nil {
		return 0, err
	}
	var n int64
	if _, err := fmt.Sscan(out.DBSize, &n); err != nil {
		return 0, fmt.Errorf("etcd dbSize %q: %w", out.DBSize, err)
	}
	return n, nil
}
