package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

// scaleOpts are the knobs of the control-plane scale run.
type scaleOpts struct {
	clients   int // synthetic clients, round-robin over the nodes
	endpoints int // (name, role) pairs: half sources, half destinations
	sample    int // endpoints whose announce→peers latency is timed
	conc      int // handshakes in flight
	budget    time.Duration
	connetd   string
	keep      bool
}

const (
	scaleNodes      = 3
	scaleTransports = 32
	scaleToken      = "scale-client-token"
	scalePrefix     = "/connetd-scale/"
	// latencyTarget is the TARGET line: a peer change must reach the
	// counterpart on another node within this, at p99.
	latencyTarget = 100 * time.Millisecond
)

// scaleResults are the scale run's figures.
type scaleResults struct {
	clients, names       int
	connected            int
	connectDur           time.Duration // first dial → last welcome
	announced            int           // endpoints sent
	announceDur          time.Duration // first announce → every node's status complete
	statusComplete       []int         // per node: names with a source and a destination
	servedDur            time.Duration // first announce → every source got its peer
	served               int64
	lat, withdrawLat     []time.Duration
	latFailed            int
	nodes                []string
	nodeIdle, nodeLoaded []memKB
	nodeConnected        []memKB // all connected, nothing announced: the cost of the sessions alone
	etcdIdle, etcdLoaded []memKB
	keys                 int64
	dbSize               int64
	errors, lost         int64
	notes                []string
	unsent               map[string]bool // names with an announce not sent
	statusGet            []time.Duration // per node: one status request, all registered
	loadBefore, loadAft  string
}

func (r *scaleResults) note(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	log.Print(s)
	r.notes = append(r.notes, s)
}

// controlNode is one `connetd control` of the scale run.
type controlNode struct {
	name    string
	p       *proc
	clients *net.UDPAddr
	status  string // http://addr/
}

func runScale(parent context.Context, o scaleOpts) (res *scaleResults, err error) {
	if o.clients < scaleNodes || o.endpoints < 2 {
		return nil, fmt.Errorf("-scale-clients must be at least %d and -scale-endpoints at least 2", scaleNodes)
	}
	// Past the budget the run reports what it got; an interrupt (parent)
	// only cleans up.
	ctx, cancel := context.WithTimeout(parent, o.budget)
	defer cancel()
	interrupted := func() error {
		if parent.Err() != nil {
			return fmt.Errorf("interrupted: %w", parent.Err())
		}
		return nil
	}
	dir, certFile, keyFile, bin, cleanup, err := prepare(ctx, o.connetd, o.keep, "connetd-bench-scale-")
	if err != nil {
		return nil, err
	}
	defer cleanup()

	log.Printf("starting a %d-member etcd cluster", scaleNodes)
	etcd, err := startEtcd(ctx, dir, scaleNodes)
	defer func() {
		if etcd != nil {
			log.Printf("stopping etcd")
			etcd.stop()
		}
	}()
	if err != nil {
		return nil, err
	}
	nodes, err := startControlNodes(bin, dir, certFile, keyFile, etcd.clientURL)
	defer func() {
		for _, n := range nodes {
			if err != nil && ctx.Err() == nil {
				log.Printf("--- %s log tail ---\n%s", n.name, n.p.logTail(15))
			}
			n.p.stop()
		}
	}()
	if err != nil {
		return nil, err
	}
	if err := waitClusterFormed(ctx, nodes); err != nil {
		return nil, err
	}
	res = &scaleResults{clients: o.clients, names: o.endpoints / 2, loadBefore: loadAvg()}
	for _, n := range nodes {
		res.nodes = append(res.nodes, n.name)
	}
	// Idle figures after the runtime has settled from start-up.
	if !backoff.Wait(ctx, time.Second) {
		return nil, ctx.Err()
	}
	if res.nodeIdle, err = memOf(nodePIDs(nodes)); err != nil {
		return nil, err
	}
	if res.etcdIdle, err = memOf(etcd.pids()); err != nil {
		return nil, err
	}

	fleet, err := newFleet(o.clients)
	if err != nil {
		return nil, err
	}
	trs, err := synthTransports(scaleTransports)
	if err != nil {
		return nil, err
	}
	defer func() {
		fleet.closing.Store(true)
		log.Printf("closing %d client connections", len(fleet.clients))
		for _, c := range fleet.clients {
			c.close()
		}
		for _, t := range trs {
			t.Close()
			t.Conn.Close()
		}
	}()

	connectAll(ctx, o, res, fleet, nodes, trs, certFile)
	if err := interrupted(); err != nil {
		return nil, err
	}
	if res.nodeConnected, err = memOf(nodePIDs(nodes)); err != nil {
		return nil, err
	}
	if res.connected == 0 {
		return res, fmt.Errorf("no client connected: %v", derefOr(fleet.firstErr.Load()))
	}
	announceAll(ctx, res, fleet, nodes)
	if err := interrupted(); err != nil {
		return nil, err
	}
	if res.nodeLoaded, err = memOf(nodePIDs(nodes)); err != nil {
		return res, err
	}
	if res.etcdLoaded, err = memOf(etcd.pids()); err != nil {
		return res, err
	}
	// What an operator's `connetctl status` or a scrape costs at this size.
	for _, n := range nodes {
		t0 := time.Now()
		if _, err := getNodeStatus(ctx, n.status); err != nil {
			res.note("%s status: %v", n.name, err)
		}
		res.statusGet = append(res.statusGet, time.Since(t0))
	}
	if res.keys, err = etcdCount(ctx, etcd.clientURL[0], scalePrefix); err != nil {
		res.note("etcd key count: %v", err)
	}
	if res.dbSize, err = etcdDBSize(ctx, etcd.clientURL[0]); err != nil {
		res.note("etcd db size: %v", err)
	}
	err = nil
	measureLatency(ctx, o, res, fleet)
	if err := interrupted(); err != nil {
		return nil, err
	}
	res.errors, res.lost = fleet.errors.Load(), fleet.lost.Load()
	if res.errors > 0 || res.lost > 0 {
		res.note("%d error messages from control, %d control streams lost; first: %s", res.errors, res.lost, derefOr(fleet.firstErr.Load()))
	}
	for _, n := range nodes {
		if n.p.exited() {
			res.note("%s exited during the run (%v)", n.name, n.p.err)
		}
	}
	res.loadAft = loadAvg()
	return res, nil
}

func derefOr(s *string) string {
	if s == nil {
		return "none"
	}
	return *s
}

func nodePIDs(nodes []*controlNode) []int {
	var ps []int
	for _, n := range nodes {
		ps = append(ps, n.p.pid())
	}
	return ps
}

func memOf(pids []int) ([]memKB, error) {
	var out []memKB
	for _, pid := range pids {
		m, err := rssKB(pid)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// startControlNodes writes the three nodes' configs (one token, one
// certificate, the same etcd prefix) and starts them.
func startControlNodes(bin, dir, cert, key string, etcdURLs []string) ([]*controlNode, error) {
	ports, err := freePorts(3 * scaleNodes)
	if err != nil {
		return nil, err
	}
	eps, _ := json.Marshal(etcdURLs)
	var nodes []*controlNode
	for i := range scaleNodes {
		name := fmt.Sprintf("ctl-%d", i+1)
		clients, relays, status := ports[3*i], ports[3*i+1], ports[3*i+2]
		// The session limit per token is for honest single machines; the
		// fleet shares one token.
		conf := fmt.Sprintf(`[control]
cert-file = %q
key-file = %q
clients-addr = "127.0.0.1:%d"
clients-tokens = [%q]
relays-addr = "127.0.0.1:%d"
relays-tokens = ["scale-relay-token"]
status-addr = "127.0.0.1:%d"
store-dir = %q
node-name = %q
store = "etcd"
etcd-endpoints = %s
etcd-prefix = %q
max-sessions-per-token = 100000
`, cert, key, clients, scaleToken, relays, status, filepath.Join(dir, name+"-store"), name, eps, scalePrefix)
		confPath := filepath.Join(dir, name+".toml")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			return nodes, fmt.Errorf("write %s: %w", confPath, err)
		}
		p, err := startProc(name, filepath.Join(dir, name+".log"), bin, "control", "--config", confPath)
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, &controlNode{name: name, p: p,
			clients: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: clients},
			status:  fmt.Sprintf("http://127.0.0.1:%d/", status)})
	}
	return nodes, nil
}

// controlStatus is the part of a control node's status the scale run reads.
type controlStatus struct {
	Endpoints []struct {
		Name         string `json:"name"`
		Sources      int    `json:"sources"`
		Destinations int    `json:"destinations"`
	} `json:"endpoints"`
	Cluster *struct {
		State         string            `json:"state"`
		Nodes         []json.RawMessage `json:"nodes"`
		RemoteClients int               `json:"remote_clients"`
	} `json:"cluster"`
}

// nodeStatus is a control node's status: at the top level from a
// `connetd control`, under "control" from a `connetd server`.
type nodeStatus struct {
	controlStatus
	Server *controlStatus `json:"control"`
}

// ctl is the control part, whichever the shape.
func (s *nodeStatus) ctl() *controlStatus {
	if s.Server != nil {
		return s.Server
	}
	return &s.controlStatus
}

func getNodeStatus(ctx context.Context, url string) (*nodeStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("status request: %w", err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("get status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get status %s: %s", url, resp.Status)
	}
	var st nodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("decode status of %s: %w", url, err)
	}
	return &st, nil
}

// waitClusterFormed waits until every node is in state ok and sees the
// other two.
func waitClusterFormed(ctx context.Context, nodes []*controlNode) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	last := "no answer yet"
	for {
		ready := 0
		for _, n := range nodes {
			if n.p.exited() {
				return fmt.Errorf("%s exited at start (%v); log tail:\n%s", n.name, n.p.err, n.p.logTail(20))
			}
			st, err := getNodeStatus(ctx, n.status)
			switch {
			case err != nil:
				last = err.Error()
			case st.ctl().Cluster == nil:
				last = n.name + ": no cluster in status"
			case st.ctl().Cluster.State != "ok" || len(st.ctl().Cluster.Nodes) != len(nodes)-1:
				last = fmt.Sprintf("%s: state %s, %d other nodes", n.name, st.ctl().Cluster.State, len(st.ctl().Cluster.Nodes))
			default:
				ready++
			}
		}
		if ready == len(nodes) {
			log.Printf("control cluster formed: %d nodes", len(nodes))
			return nil
		}
		if !backoff.Wait(ctx, 100*time.Millisecond) {
			return fmt.Errorf("control cluster not formed after 30s (last: %s)", last)
		}
	}
}

// newFleet makes the clients' identities, each with its own certificate
// as real clients have.
func newFleet(n int) (*synthFleet, error) {
	f := &synthFleet{}
	for i := range n {
		id, err := identity.New("bench-client")
		if err != nil {
			return nil, fmt.Errorf("client identity: %w", err)
		}
		f.clients = append(f.clients, &synthClient{idx: i, node: i % scaleNodes, id: id, peers: map[string]*peerState{}})
	}
	return f, nil
}

// connectAll connects every client, o.conc handshakes at a time.
func connectAll(ctx context.Context, o scaleOpts, res *scaleResults, f *synthFleet, nodes []*controlNode, trs []*quic.Transport, certFile string) {
	log.Printf("connecting %d clients to %d nodes (%d handshakes at a time)", len(f.clients), len(nodes), o.conc)
	var (
		wg        sync.WaitGroup
		connected atomic.Int64
		failed    atomic.Int64
		next      atomic.Int64
	)
	start := time.Now()
	var lastMu sync.Mutex
	var last time.Time
	for range o.conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(f.clients) || ctx.Err() != nil {
					return
				}
				c := f.clients[i]
				tc, err := synthTLS(certFile, c.id)
				if err == nil {
					err = c.connect(ctx, f, trs[i%len(trs)], nodes[c.node].clients, tc, scaleToken)
				}
				if err != nil {
					if failed.Add(1) <= 3 {
						log.Printf("connect: %v", err)
					}
					f.noteErr(err.Error())
					continue
				}
				connected.Add(1)
				lastMu.Lock()
				last = time.Now()
				lastMu.Unlock()
			}
		})
	}
	wg.Wait()
	res.connected = int(connected.Load())
	res.connectDur = last.Sub(start)
	log.Printf("%d clients connected in %v, %d failed", res.connected, res.connectDur.Round(time.Millisecond), failed.Load())
	if n := failed.Load(); n > 0 {
		res.note("%d of %d clients did not connect; first error: %s", n, len(f.clients), derefOr(f.firstErr.Load()))
	}
}

// epName is the name of endpoint n.
func epName(n int) string { return fmt.Sprintf("scale-%05d", n) }

// pairOf gives name n a source client and a destination client on
// different nodes, so that every peer relation crosses nodes.
func pairOf(n, clients int) (src, dst int) {
	src = n % clients
	dst = (src + 1) % clients
	if dst%scaleNodes == src%scaleNodes {
		dst = (dst + 1) % clients
	}
	return src, dst
}

// announceAll has every client announce its endpoints and waits until
// every node's status lists every name with a source and a destination,
// and every source has got its peer.
func announceAll(ctx context.Context, res *scaleResults, f *synthFleet, nodes []*controlNode) {
	byClient := make([][]*wire.Announce, len(f.clients))
	for n := range res.names {
		s, d := pairOf(n, len(f.clients))
		byClient[s] = append(byClient[s], &wire.Announce{Endpoint: epName(n), Role: restrict.RoleSource, Route: wire.RouteAny})
		byClient[d] = append(byClient[d], &wire.Announce{Endpoint: epName(n), Role: restrict.RoleDestination, Route: wire.RouteAny})
	}
	log.Printf("announcing %d endpoints (%d names)", 2*res.names, res.names)
	f.servedWant.Store(int64(res.names))
	start := time.Now()
	var (
		wg        sync.WaitGroup
		sent      atomic.Int64
		next      atomic.Int64
		failMu    sync.Mutex
		firstFail string
	)
	failedNames := map[string]bool{}
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(f.clients) {
					return
				}
				c := f.clients[i]
				for _, m := range byClient[i] {
					if err := c.send(m); err != nil {
						failMu.Lock()
						failedNames[m.Endpoint] = true
						if firstFail == "" {
							firstFail = err.Error()
						}
						failMu.Unlock()
						continue
					}
					sent.Add(1)
				}
			}
		})
	}
	wg.Wait()
	res.announced = int(sent.Load())
	if len(failedNames) > 0 {
		res.note("%d announces not sent (their names are left out of what is waited for and timed); first: %s", len(failedNames), firstFail)
	}
	res.unsent = failedNames
	want := res.names - len(failedNames)
	if len(failedNames) > 0 {
		// Lowered after the fact: the stamp may be missed, and then the
		// poll below times it instead.
		f.servedWant.Store(int64(want))
	}
	log.Printf("%d announces sent in %v; waiting for every node to list them", res.announced, time.Since(start).Round(time.Millisecond))
	res.statusComplete = make([]int, len(nodes))
	statusDone := false
	lastLog := time.Now()
	for {
		if !statusDone {
			var wg sync.WaitGroup
			var done atomic.Int64
			for i, n := range nodes {
				wg.Go(func() {
					st, err := getNodeStatus(ctx, n.status)
					if err != nil {
						return
					}
					complete := 0
					for _, e := range st.ctl().Endpoints {
						if strings.HasPrefix(e.Name, "scale-") && !failedNames[e.Name] && e.Sources >= 1 && e.Destinations >= 1 {
							complete++
						}
					}
					res.statusComplete[i] = complete
					if complete == want {
						done.Add(1)
					}
				})
			}
			wg.Wait()
			if int(done.Load()) == len(nodes) {
				statusDone = true
				res.announceDur = time.Since(start)
				log.Printf("every node lists all %d names after %v", want, res.announceDur.Round(time.Millisecond))
			}
		}
		res.served = f.sourcesServed.Load()
		if res.served >= int64(want) && res.servedDur == 0 {
			res.servedDur = time.Since(start)
			if at := f.servedAt.Load(); at != nil {
				res.servedDur = at.Sub(start)
			}
			log.Printf("every source got its peer after %v", res.servedDur.Round(time.Millisecond))
		}
		if statusDone && res.servedDur > 0 {
			return
		}
		if time.Since(lastLog) >= 2*time.Second {
			lastLog = time.Now()
			log.Printf("after %v: nodes list %v of %d names complete, %d sources got their peer",
				time.Since(start).Round(100*time.Millisecond), res.statusComplete, want, res.served)
		}
		// The status of thousands of clients is not free to build: poll
		// gently so as not to slow what is being measured. The clients
		// time their side exactly; this confirms that the nodes agree.
		if !backoff.Wait(ctx, 500*time.Millisecond) {
			res.note("registration incomplete at the time limit: nodes list %v of %d names complete, %d of %d sources got their peer",
				res.statusComplete, res.names, res.served, res.names)
			return
		}
		if time.Since(start) > 2*time.Minute {
			res.note("registration incomplete after 2m: nodes list %v of %d names complete, %d of %d sources got their peer",
				res.statusComplete, res.names, res.served, res.names)
			return
		}
	}
}

// measureLatency withdraws and re-announces the destination of a sample of
// names, one at a time, and times until the source, on another node, is
// told: first that the peer left, then that it is back.
func measureLatency(ctx context.Context, o scaleOpts, res *scaleResults, f *synthFleet) {
	sample := min(o.sample, res.names)
	if sample <= 0 {
		return
	}
	log.Printf("timing announce→peers across nodes for %d endpoints", sample)
	step := res.names / sample
	for k := range sample {
		if ctx.Err() != nil {
			res.note("latency sample cut short at %d of %d: %v", k, sample, ctx.Err())
			return
		}
		n := k * step
		s, d := pairOf(n, len(f.clients))
		src, dst := f.clients[s], f.clients[d]
		if src.conn == nil || dst.conn == nil {
			res.latFailed++
			continue
		}
		name := epName(n)
		if res.unsent[name] {
			continue
		}
		t0 := time.Now()
		if err := dst.send(&wire.Withdraw{Endpoint: name, Role: restrict.RoleDestination}); err != nil {
			res.latFailed++
			continue
		}
		at, err := src.waitPeers(ctx, name, func(n int) bool { return n == 0 }, 5*time.Second)
		if err != nil {
			res.latFailed++
			f.noteErr("withdraw: " + err.Error())
			continue
		}
		res.withdrawLat = append(res.withdrawLat, at.Sub(t0))
		t0 = time.Now()
		if err := dst.send(&wire.Announce{Endpoint: name, Role: restrict.RoleDestination, Route: wire.RouteAny}); err != nil {
			res.latFailed++
			continue
		}
		at, err = src.waitPeers(ctx, name, func(n int) bool { return n > 0 }, 5*time.Second)
		if err != nil {
			res.latFailed++
			f.noteErr("announce: " + err.Error())
			continue
		}
		res.lat = append(res.lat, at.Sub(t0))
	}
	if res.latFailed > 0 {
		res.note("%d of %d latency samples failed (timeout 5s or send error)", res.latFailed, sample)
	}
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
}
