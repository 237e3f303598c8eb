package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// cluster is one connetd server and two clients on loopback: the
// destination client points both its endpoints at the bench server, and the
// source client exposes them as srcDirect (route direct) and srcRelay
// (route relay), so each measurement runs on a known path. The UDP
// endpoints do the same for the bench's UDP server.
type cluster struct {
	server, dst, src *proc
	srcDirect        string // TCP address of the direct-route source
	srcRelay         string // TCP address of the relay-route source
	udpDirect        string // UDP address of the direct-route udp source
	udpRelay         string // UDP address of the relay-route udp source
	srcStatus        string // HTTP status address of the source client
	serverStatus     string // and of the server
}

func (c *cluster) procs() []*proc {
	var ps []*proc
	for _, p := range []*proc{c.server, c.dst, c.src} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

func (c *cluster) stop() {
	// Clients first, so the server does not log their departure as errors.
	for _, p := range []*proc{c.src, c.dst, c.server} {
		if p != nil {
			p.stop()
		}
	}
}

// startCluster writes the configs into dir and starts the three processes.
// On error the caller still calls stop on the returned cluster.
func startCluster(bin, dir, cert, key, target, udpTarget string) (*cluster, error) {
	ports, err := freePorts(11)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	serverAddr, relayAddr := addr(0), addr(1)
	c := &cluster{srcDirect: addr(6), srcRelay: addr(7), udpDirect: addr(8), udpRelay: addr(9), srcStatus: addr(5),
		serverStatus: addr(10)}

	server := fmt.Sprintf(`[server]
tokens = ["client-d-token", "client-s-token"]
cert-file = %q
key-file = %q
addr = %q
relay-addr = %q
relay-hostname = "127.0.0.1"
store-dir = %q
status-addr = %q
`, cert, key, serverAddr, relayAddr, filepath.Join(dir, "server-store"), c.serverStatus)
	client := func(token, direct, status string) string {
		return fmt.Sprintf(`[client]
token = %q
server-addr = %q
server-cas = %q
direct-addr = %q
status-addr = %q
`, token, serverAddr, cert, direct, status)
	}
	dst := client("client-d-token", addr(2), addr(4)) + fmt.Sprintf(`
[client.destinations.direct]
addr = %q
route = "direct"

[client.destinations.relay]
addr = %q
route = "relay"

[client.destinations.udp-direct]
url = "udp://%s"
route = "direct"

[client.destinations.udp-relay]
url = "udp://%s"
route = "relay"
`, target, target, udpTarget, udpTarget)
	src := client("client-s-token", addr(3), c.srcStatus) + fmt.Sprintf(`
[client.sources.direct]
addr = %q
route = "direct"

[client.sources.relay]
addr = %q
route = "relay"

[client.sources.udp-direct]
url = "udp://%s"
route = "direct"

[client.sources.udp-relay]
url = "udp://%s"
route = "relay"
`, c.srcDirect, c.srcRelay, c.udpDirect, c.udpRelay)

	for name, body := range map[string]string{"server.toml": server, "dst.toml": dst, "src.toml": src} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return c, fmt.Errorf("write %s: %w", name, err)
		}
	}
	start := func(name, role, conf string) (*proc, error) {
		return startProc(name, filepath.Join(dir, name+".log"), bin, role, "--config", filepath.Join(dir, conf))
	}
	if c.server, err = start("server", "server", "server.toml"); err != nil {
		return c, err
	}
	if c.dst, err = start("dst-client", "client", "dst.toml"); err != nil {
		return c, err
	}
	if c.src, err = start("src-client", "client", "src.toml"); err != nil {
		return c, err
	}
	return c, nil
}

// statusJSON is the part of the client status the bench needs.
type statusJSON struct {
	Sources []struct {
		Name  string `json:"name"`
		Peers []struct {
			Path string `json:"path"`
		} `json:"peers"`
		UDP *udpStatusJSON `json:"udp"`
	} `json:"sources"`
	Relay *relayStatusJSON `json:"relay"` // the server's
}

// relayStatusJSON is what the bench reads of the relay's status.
type relayStatusJSON struct {
	Packets       int64 `json:"packets_forwarded"`
	Reads         int64 `json:"reads"`
	ReadDatagrams int64 `json:"read_datagrams"`
}

// relayCounters reads the server's relay counters.
func (c *cluster) relayCounters(ctx context.Context) (relayStatusJSON, error) {
	st, err := fetchStatus(ctx, &http.Client{Timeout: time.Second}, "http://"+c.serverStatus+"/")
	if err != nil {
		return relayStatusJSON{}, err
	}
	if st.Relay == nil {
		return relayStatusJSON{}, fmt.Errorf("server status has no relay")
	}
	return *st.Relay, nil
}

// udpStatusJSON is a udp source's flows and drops.
type udpStatusJSON struct {
	MaxPayload      int   `json:"max_payload"`
	DroppedOversize int64 `json:"dropped_oversize"`
	DroppedOther    int64 `json:"dropped_other"`
}

// waitReady polls the source client's status until the direct sources have
// a direct path and the relay sources a relay path, or timeout passes.
func (c *cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	last := "no answer yet"
	for {
		for _, p := range c.procs() {
			if p.exited() {
				return fmt.Errorf("%s exited during setup (%v); log tail:\n%s", p.name, p.err, p.logTail(20))
			}
		}
		paths, err := fetchPaths(ctx, hc, "http://"+c.srcStatus+"/")
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("paths %v", paths)
			if paths["direct"] == "direct" && paths["relay"] == "relay" &&
				paths["udp-direct"] == "direct" && paths["udp-relay"] == "relay" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("paths not ready after %v (last: %s)", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fetchStatus gets and decodes the status at url.
func fetchStatus(ctx context.Context, hc *http.Client, url string) (*statusJSON, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("status request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get status: %s", resp.Status)
	}
	var st statusJSON
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}
	return &st, nil
}

// fetchPaths maps source name to the path of its first peer ("" if none).
func fetchPaths(ctx context.Context, hc *http.Client, url string) (map[string]string, error) {
	st, err := fetchStatus(ctx, hc, url)
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, s := range st.Sources {
		paths[s.Name] = ""
		if len(s.Peers) > 0 {
			paths[s.Name] = s.Peers[0].Path
		}
	}
	return paths, nil
}

// udpSourceStatus is the udp part of the named source's status.
func (c *cluster) udpSourceStatus(ctx context.Context, name string) (udpStatusJSON, error) {
	st, err := fetchStatus(ctx, &http.Client{Timeout: time.Second}, "http://"+c.srcStatus+"/")
	if err != nil {
		return udpStatusJSON{}, err
	}
	for _, s := range st.Sources {
		if s.Name == name && s.UDP != nil {
			return *s.UDP, nil
		}
	}
	return udpStatusJSON{}, fmt.Errorf("status has no udp source %q", name)
}

// logFailureTails prints each process's recent log to stderr.
func (c *cluster) logFailureTails() {
	for _, p := range c.procs() {
		log.Printf("--- %s log tail ---\n%s", p.name, p.logTail(15))
	}
}
