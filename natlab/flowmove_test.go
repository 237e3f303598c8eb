package natlab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Flow moves: one long, steady, sha256-checked TCP transfer per row,
// while its path changes under it (issue 12). Router counters on the core
// say where the bytes after the change went.
const (
	moveSize = 24 << 20
	moveRate = 3 << 20 // bytes per second: eight seconds a transfer
)

// flowRow is one row: its source's route, whether the direct path is
// blocked at the core when the clients start, and what happens at at
// into the transfer.
type flowRow struct {
	name      string
	route     string // the source's route; "" for any
	blocked   bool   // the direct path is blocked at the start
	at        time.Duration
	act       func(t *testing.T, l *lab, p pairing, srcNS string)
	move      string        // the move the source must report after act ("relay→direct")
	lateRoute string        // where the bytes after the move must go
	maxStall  time.Duration // the longest stall allowed
}

type flowResult struct {
	intact      bool
	stall       time.Duration
	moves       map[string]int64
	lateRoute   string
	late        int64 // bytes after the move
	direct, srv int64
	note        string
}

func TestFlowMoves(t *testing.T) {
	l, dir := labWithServer(t, `log-level = "debug"`)
	l.bigSum = payload(t, dir, "move.bin", moveSize)
	p := pairing{src: l.sites["easy1"], dst: l.sites["easy2"]}
	rows := []flowRow{
		{name: "relay→direct (direct blocked, then unblocked)", blocked: true, at: 3 * time.Second,
			act: func(t *testing.T, l *lab, p pairing, _ string) { l.blockDirect(t, p, false) },
			move: "relay→direct", lateRoute: "direct", maxStall: 1500 * time.Millisecond},
		{name: "direct→relay (direct blocked mid-transfer)", at: 2 * time.Second,
			act:  func(t *testing.T, l *lab, p pairing, _ string) { l.blockDirect(t, p, true) },
			move: "direct→relay", lateRoute: "relay", maxStall: 1500 * time.Millisecond},
		{name: "address change behind a NAT", at: 2 * time.Second,
			act: func(t *testing.T, l *lab, p pairing, srcNS string) { l.changeAddress(t, p, srcNS) },
			// The new path may be punched before the transfer ends: the
			// bytes after the move go by relay, then direct.
			move: "direct→relay", maxStall: 2 * time.Second},
		{name: "server restart, relayed flow", route: "relay", at: 2 * time.Second,
			act: func(t *testing.T, l *lab, _ pairing, _ string) { l.restartServer(t) },
			lateRoute: "relay", maxStall: 2 * time.Second},
		{name: "server restart, direct flow", route: "direct", at: 2 * time.Second,
			act: func(t *testing.T, l *lab, _ pairing, _ string) { l.restartServer(t) },
			lateRoute: "direct", maxStall: 500 * time.Millisecond},
	}
	var table logBuf
	table.add("%-46s %-7s %9s %9s %12s %12s %s", "row (easy→easy)", "sha256", "stall", "max", "direct B", "server B", "moves")
	for _, r := range rows {
		t.Run(strings.NewReplacer("→", "_to_", " ", "_", ",", "", "(", "", ")", "").Replace(r.name), func(t *testing.T) {
			res := l.runFlowRow(t, dir, p, r)
			sha := "ok"
			if !res.intact {
				sha = "BROKEN"
			}
			table.add("%-46s %-7s %9s %9s %12d %12d %v%s", r.name, sha, res.stall.Round(time.Millisecond), r.maxStall,
				res.direct, res.srv, res.moves, res.note)
			if !res.intact {
				t.Errorf("%s: the transfer did not end intact", r.name)
			}
			if res.stall > r.maxStall {
				t.Errorf("%s: the transfer stalled %v, want at most %v", r.name, res.stall, r.maxStall)
			}
			if r.lateRoute != "" && res.lateRoute != r.lateRoute {
				t.Errorf("%s: the %d bytes after the change went %s (direct %d B, server %d B), want %s",
					r.name, res.late, res.lateRoute, res.direct, res.srv, r.lateRoute)
			}
		})
	}
	t.Logf("flow moves (one %d MiB transfer per row at %d MiB/s):\n%s", moveSize>>20, moveRate>>20, table.String())
	fmt.Fprintf(os.Stdout, "NAT lab flow moves:\n%s", table.String())
}

func (l *lab) runFlowRow(t *testing.T, dir string, p pairing, r flowRow) flowResult {
	var res flowResult
	pdir := filepath.Join(dir, "move-"+strings.NewReplacer("→", "-", " ", "-", ",", "", "(", "", ")", "").Replace(r.name))
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	route := ""
	if r.route != "" {
		route = fmt.Sprintf("route = %q\n", r.route)
	}
	write(t, pdir, "dst.toml", clientConf(dir, fmt.Sprintf("[client.destinations.lab]\naddr = \"127.0.0.1:3000\"\nfile-server-root = %q\n", filepath.Join(dir, "www"))))
	write(t, pdir, "src.toml", clientConf(dir, "[client.sources.lab]\naddr = \"127.0.0.1:8000\"\n"+route))
	countNS := l.accounting(t, p)
	l.flushConntrack(t, p)
	if r.blocked {
		l.blockDirect(t, p, true)
	}
	defer l.blockDirect(t, p, false)
	srcNS, dstNS := p.src.clients[p.srcI], p.dst.clients[p.dstI]
	bin := filepath.Join(binDir, "connetd")
	dst := l.start(t, dstNS, "connetd-dst", pdir, bin, "--config", filepath.Join(pdir, "dst.toml"))
	defer dst.stop(t)
	src := l.start(t, srcNS, "connetd-src", pdir, bin, "--config", filepath.Join(pdir, "src.toml"))
	defer src.stop(t)
	want := "direct"
	if r.blocked || r.route == "relay" {
		want = "relay"
	}
	waitPeerPath(t, srcNS, want, 20*time.Second)

	type outcome struct {
		sum   string
		n     int64
		stall time.Duration
		err   error
	}
	done := make(chan outcome, 1)
	go func() { // ends with the transfer, bounded by its timeout
		sum, n, stall, err := steadyFetch(srcNS, "move.bin", moveRate, 2*time.Minute)
		done <- outcome{sum, n, stall, err}
	}()
	time.Sleep(r.at)
	r.act(t, l, p, srcNS)
	if r.move != "" {
		if !waitMove(srcNS, r.move, 20*time.Second) {
			t.Errorf("the source reported no %s move within 20s", r.move)
		}
	}
	// The bytes from here on are "late": where did they go?
	before := fetchedSoFar(srcNS)
	l.w.in(countNS, "iptables", "-w", "-Z", "ACCT")
	o := <-done
	c := l.counters(countNS, "filter", "ACCT")
	res.direct, res.srv = c["direct"], c["server"]
	res.late = o.n - before
	res.lateRoute = judgeRoute(res.direct, res.srv, res.late)
	res.intact = o.err == nil && o.sum == l.bigSum
	res.stall = o.stall
	if o.err != nil {
		res.note = fmt.Sprintf("; failed after %d B: %v", o.n, o.err)
	}
	if st, err := status(srcNS); err == nil {
		res.moves = st.FlowMoves.Counts
	}
	return res
}

// blockDirect drops (on) or lets through (off) the UDP packets between
// the two sites at the core router, before any other rule sees them.
func (l *lab) blockDirect(t *testing.T, p pairing, on bool) {
	t.Helper()
	for _, d := range [][2]string{{p.src.public, p.dst.public}, {p.dst.public, p.src.public}} {
		rule := []string{"FORWARD", "-p", "udp", "-s", d[0], "-d", d[1], "-j", "DROP"}
		exists := l.w.try(l.core, append([]string{"iptables", "-w", "-C"}, rule...)...) == nil
		switch {
		case on && !exists:
			l.w.in(l.core, append([]string{"iptables", "-w", "-I"}, rule...)...)
		case !on && exists:
			l.w.in(l.core, append([]string{"iptables", "-w", "-D"}, rule...)...)
		}
	}
}

// changeAddress moves the source to a new LAN address.
func (l *lab) changeAddress(t *testing.T, p pairing, srcNS string) {
	t.Helper()
	old := p.src.lanAddrs[p.srcI]
	l.moves++
	moved := fmt.Sprintf("%s.%d", old[:strings.LastIndex(old, ".")], 50+l.moves)
	l.w.in(srcNS, "ip", "addr", "add", moved+"/24", "dev", "eth0")
	l.w.in(srcNS, "ip", "addr", "del", old+"/24", "dev", "eth0")
	p.src.lanAddrs[p.srcI] = moved
}

// restartServer stops the server (SIGTERM) and starts it again.
func (l *lab) restartServer(t *testing.T) {
	t.Helper()
	args := l.srv.cmd.Args
	l.srv.stop(t)
	dir := filepath.Dir(args[len(args)-1])
	l.srv = l.start(t, l.server, "connetd-server-restarted", dir, filepath.Join(binDir, "connetd"), "--config", args[len(args)-1])
	waitLog(t, l.srv, "control listening for clients", 10*time.Second)
}

// waitPeerPath waits until the source in ns uses path to its peer.
func waitPeerPath(t *testing.T, ns, path string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if st, err := status(ns); err == nil && len(st.Sources) > 0 && len(st.Sources[0].Peers) > 0 &&
			st.Sources[0].Peers[0].Path == path {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the source never used path %s within %v", path, bound)
}

// waitMove waits until the source in ns reports a flow move.
func waitMove(ns, move string, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if st, err := status(ns); err == nil && st.FlowMoves.Counts[move] > 0 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// fetchedSoFar is how many bytes the source in ns passed to its TCP
// client so far (its endpoint's counter).
func fetchedSoFar(ns string) int64 {
	st, err := status(ns)
	if err != nil || len(st.Sources) == 0 {
		return 0
	}
	return st.Sources[0].BytesIn
}

// steadyFetch downloads file through the source in ns at rate bytes per
// second over one connection, and returns the sha256 of what arrived and
// the longest time between two reads once bytes flowed.
func steadyFetch(ns, file string, rate int, timeout time.Duration) (string, int64, time.Duration, error) {
	resp, err := httpIn(ns, timeout).Get("http://127.0.0.1:8000/" + file)
	if err != nil {
		return "", 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, 0, fmt.Errorf("status %s", resp.Status)
	}
	h := sha256.New()
	var n int64
	var longest time.Duration
	buf := make([]byte, 32<<10)
	start := time.Now()
	last := start
	for {
		m, err := resp.Body.Read(buf)
		if m > 0 {
			now := time.Now()
			if n > 0 {
				longest = max(longest, now.Sub(last))
			}
			last = now
			h.Write(buf[:m])
			n += int64(m)
			if ahead := time.Duration(n)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
				last = time.Now()
			}
		}
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), n, longest, nil
		}
		if err != nil {
			return hex.EncodeToString(h.Sum(nil)), n, longest, err
		}
	}
}
