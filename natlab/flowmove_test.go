package natlab

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	data := make([]byte, moveSize)
	_, _ = rand.Read(data)
	p := pairing{src: l.sites["easy1"], dst: l.sites["easy2"]}
	rows := []flowRow{
		{name: "relay→direct (direct blocked, then unblocked)", blocked: true, at: 3 * time.Second,
			act:  func(t *testing.T, l *lab, p pairing, _ string) { l.blockDirect(t, p, false) },
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
			act:       func(t *testing.T, l *lab, _ pairing, _ string) { l.restartServer(t) },
			lateRoute: "relay", maxStall: 2 * time.Second},
		// Down long enough for the relayed path to be found stalled: the
		// flow waits for a new relayed connection through the server that
		// comes back.
		{name: "server down 1s, relayed flow", route: "relay", at: 2 * time.Second,
			act:       func(t *testing.T, l *lab, _ pairing, _ string) { l.restartServerAfter(t, time.Second) },
			lateRoute: "relay", maxStall: 2500 * time.Millisecond},
		{name: "server restart, direct flow", route: "direct", at: 2 * time.Second,
			act:       func(t *testing.T, l *lab, _ pairing, _ string) { l.restartServer(t) },
			lateRoute: "direct", maxStall: 500 * time.Millisecond},
	}
	var table logBuf
	table.add("%-46s %-7s %9s %9s %12s %12s %s", "row (easy→easy)", "sha256", "stall", "max", "direct B", "server B", "moves")
	for _, r := range rows {
		t.Run(strings.NewReplacer("→", "_to_", " ", "_", ",", "", "(", "", ")", "").Replace(r.name), func(t *testing.T) {
			res := l.runFlowRow(t, dir, p, r, data)
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

func (l *lab) runFlowRow(t *testing.T, dir string, p pairing, r flowRow, data []byte) flowResult {
	var res flowResult
	pdir := filepath.Join(dir, "move-"+strings.NewReplacer("→", "-", " ", "-", ",", "", "(", "", ")", "").Replace(r.name))
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	route := ""
	if r.route != "" {
		route = fmt.Sprintf("route = %q\n", r.route)
	}
	write(t, pdir, "dst.toml", clientConf(dir, "[client.destinations.lab]\naddr = \"127.0.0.1:3000\"\n"))
	write(t, pdir, "src.toml", clientConf(dir, "[client.sources.lab]\naddr = \"127.0.0.1:8000\"\n"+route))
	countNS := l.accounting(t, p)
	l.flushConntrack(t, p)
	if r.blocked {
		l.blockDirect(t, p, true)
	}
	defer l.blockDirect(t, p, false)
	srcNS, dstNS := p.src.clients[p.srcI], p.dst.clients[p.dstI]
	sender := pacedSender(t, dstNS, "127.0.0.1:3000", data, moveRate)
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
	go func() { // ends with the transfer, bounded by its deadline
		sum, n, stall, err := readAll(srcNS, "127.0.0.1:8000", 2*time.Minute)
		done <- outcome{sum, n, stall, err}
	}()
	time.Sleep(r.at)
	r.act(t, l, p, srcNS)
	if r.move != "" && !waitMove(srcNS, r.move, 20*time.Second) {
		t.Errorf("the source reported no %s move within 20s", r.move)
	}
	// The bytes from here on are "late": where did they go?
	before := sender.sent.Load()
	l.w.in(countNS, "iptables", "-w", "-Z", "ACCT")
	o := <-done
	c := l.counters(countNS, "filter", "ACCT")
	res.direct, res.srv = c["direct"], c["server"]
	res.late = o.n - before
	res.lateRoute = judgeRoute(res.direct, res.srv, res.late*9/10)
	sum := sha256.Sum256(data)
	res.intact = o.err == nil && o.sum == hex.EncodeToString(sum[:])
	res.stall = o.stall
	if o.err != nil {
		res.note = fmt.Sprintf("; failed after %d B: %v", o.n, o.err)
	}
	if st, err := status(srcNS); err == nil {
		res.moves = st.FlowMoves.Counts
	}
	return res
}

// sender serves one connection with data at a steady rate.
type sender struct{ sent atomic.Int64 }

// pacedSender listens on addr in ns and writes data to the first
// connection at rate bytes per second, then closes it.
func pacedSender(t *testing.T, ns, addr string, data []byte, rate int) *sender {
	t.Helper()
	var ln net.Listener
	if err := inNS(ns, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	s := &sender{}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() { // ends when the connection is served or the listener closes
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		const piece = 16 << 10
		start := time.Now()
		for off := 0; off < len(data); off += piece {
			n, err := c.Write(data[off:min(off+piece, len(data))])
			s.sent.Add(int64(n))
			if err != nil {
				return
			}
			if ahead := time.Duration(s.sent.Load())*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}()
	return s
}

// readAll reads one connection to addr from inside ns to its end, as fast
// as bytes come, and returns their sha256, their count, and the longest
// time between two reads once bytes flowed: the sender is paced, so that
// is the longest stall.
func readAll(ns, addr string, timeout time.Duration) (string, int64, time.Duration, error) {
	c, err := dialIn(ns, addr, 5*time.Second)
	if err != nil {
		return "", 0, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	h := sha256.New()
	var n int64
	var longest time.Duration
	var last time.Time
	buf := make([]byte, 64<<10)
	for {
		m, err := c.Read(buf)
		if m > 0 {
			now := time.Now()
			if n > 0 {
				longest = max(longest, now.Sub(last))
			}
			last = now
			h.Write(buf[:m])
			n += int64(m)
		}
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), n, longest, nil
		}
		if err != nil {
			return hex.EncodeToString(h.Sum(nil)), n, longest, err
		}
	}
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
func (l *lab) restartServer(t *testing.T) { l.restartServerAfter(t, 0) }

// restartServerAfter stops the server, waits down, and starts it again.
func (l *lab) restartServerAfter(t *testing.T, down time.Duration) {
	t.Helper()
	args := l.srv.cmd.Args
	l.srv.stop(t)
	time.Sleep(down)
	dir := filepath.Dir(args[len(args)-1])
	// The top test's: the server outlives this row.
	l.srv = l.start(l.w.t, l.server, "connetd-server-restarted", dir, filepath.Join(binDir, "connetd"), "--config", args[len(args)-1])
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
