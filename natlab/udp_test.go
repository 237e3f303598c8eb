package natlab

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	udpDatagrams     = 2000 // on the bulk flow
	udpWindow        = 16   // datagrams in flight on it
	udpFlows         = 10   // concurrent flows besides it
	udpFlowDatagrams = 100  // on each of them
	udpFlowWindow    = 4
	udpReplyWait     = 3 * time.Second // without any reply: the rest are lost
	// relayWait bounds the wait for a relay row's path: it is used as soon
	// as it is there, and the counters tell if it went direct after all.
	relayWait  = 3 * time.Second
	echoAddr   = "127.0.0.1:5353" // the echo service, at the destination site
	sourceAddr = "127.0.0.1:5353" // the source's UDP listener
	// minQUICOverhead is the least a 1-RTT QUIC packet adds around a
	// DATAGRAM frame's payload: first byte, 1-byte packet number, AEAD
	// tag, frame type; the flow header comes on top.
	minQUICOverhead = 1 + 1 + 16 + 1
	flowHeader      = 4 // wire.FlowHeader, as a sender writes it
)

// TestUDPNAT carries UDP flows through the real daemon across the lab: an
// echo service at the destination site, the bulk flow's datagrams of
// random sizes up to the source's reported max_payload and concurrent
// flows each checked by content, the route judged from router counters
// as in TestNATMatrix, and on a 1280-byte MTU path the reported
// max_payload checked against what the path carries. It builds a lab of
// its own (a few seconds) so it runs alone.
func TestUDPNAT(t *testing.T) {
	start := time.Now()
	l, dir := labWithServer(t, `log-level = "debug"`)

	rows := []pairing{
		{name: "udp easy→hard", src: l.sites["easy1"], dst: l.sites["hard2"], expect: "direct"},
		{name: "udp hard→hard", src: l.sites["hard1"], dst: l.sites["hard2"], expect: "relay"},
		{name: "udp easy→hard, 1280 MTU", src: l.sites["easy1"], dst: l.sites["hard2"], expect: "direct", mtu: 1280},
	}
	var table logBuf
	table.add("%-26s %-7s %-7s %12s %12s %10s %11s %s", "pairing (source→dest)", "expect", "route", "direct B", "server B", "to direct", "max_payload", "note")
	for _, p := range rows {
		t.Run(strings.NewReplacer("→", "_to_", " ", "_", ",", "").Replace(p.name), func(t *testing.T) {
			r := l.runUDP(t, dir, p)
			ttd := "never"
			if r.timeToDirect >= 0 {
				ttd = r.timeToDirect.Round(10 * time.Millisecond).String()
			}
			table.add("%-26s %-7s %-7s %12d %12d %10s %11d %s", p.name, p.expect, r.route, r.directBytes, r.serverBytes, ttd, r.maxPayload, r.note)
			if r.route != p.expect {
				t.Errorf("%s: datagrams went %s (direct %d B, server %d B for %d B of payload), want %s",
					p.name, r.route, r.directBytes, r.serverBytes, r.moved, p.expect)
			}
		})
	}
	t.Logf("NAT lab UDP rows (route measured by router counters):\n%s", table.String())
	fmt.Fprintf(os.Stdout, "NAT lab UDP rows:\n%sNAT lab UDP took %v\n", table.String(), time.Since(start).Round(time.Second))
}

type udpResult struct {
	result
	maxPayload int
	moved      int64 // payload bytes, both ways
}

// echoServer answers every datagram to its sender, and remembers the
// largest it got.
type echoServer struct {
	c       *net.UDPConn
	largest atomic.Int64
}

func startEcho(t *testing.T, ns string) *echoServer {
	c, err := udpIn(ns, echoAddr, "")
	if err != nil {
		t.Fatalf("echo service: %v", err)
	}
	e := &echoServer{c: c}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if int64(n) > e.largest.Load() {
				e.largest.Store(int64(n))
			}
			_, _ = c.WriteToUDP(buf[:n], from)
		}
	}()
	return e
}

func (l *lab) runUDP(t *testing.T, dir string, p pairing) udpResult {
	res := udpResult{result: result{timeToDirect: -1}}
	pdir := filepath.Join(dir, strings.NewReplacer("→", "-", " ", "-", ",", "").Replace(p.name))
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, pdir, "dst.toml", clientConf(dir, "[client.destinations.echo]\nurl = \"udp://"+echoAddr+"\"\n"))
	write(t, pdir, "src.toml", clientConf(dir, "[client.sources.echo]\nurl = \"udp://"+sourceAddr+"\"\n"))
	if p.mtu > 0 {
		l.setWANMTU(t, p.src, p.mtu)
		defer l.setWANMTU(t, p.src, 1500)
	}
	countNS := l.accounting(t, p)
	srcNS, dstNS := p.src.clients[p.srcI], p.dst.clients[p.dstI]
	echo := startEcho(t, dstNS)
	bin := filepath.Join(binDir, "connetd")
	dst := l.start(t, dstNS, "connetd-dst", pdir, bin, "--config", filepath.Join(pdir, "dst.toml"))
	started := time.Now()
	src := l.start(t, srcNS, "connetd-src", pdir, bin, "--config", filepath.Join(pdir, "src.toml"))
	defer dst.stop(t)
	defer src.stop(t)

	bound := directWait
	if p.expect == "relay" {
		bound = relayWait
	}
	st, ttd := waitDirect(t, srcNS, started, bound)
	res.timeToDirect = ttd
	if st.Sources[0].Proto != "udp" {
		t.Errorf("source reports proto %q, want udp", st.Sources[0].Proto)
	}
	maxPayload, dstMax := firstMaxPayload(t, srcNS, dstNS)

	l.w.in(countNS, "iptables", "-w", "-Z", "ACCT")
	bulk, err := udpIn(srcNS, "", sourceAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer bulk.Close()
	n, err := exchange(bulk, 0, udpDatagrams, udpWindow, maxPayload)
	res.moved += 2 * n
	if err != nil {
		t.Errorf("bulk flow: %v", err)
	}
	var wg sync.WaitGroup
	var moved atomic.Int64
	for i := 1; i <= udpFlows; i++ {
		c, err := udpIn(srcNS, "", sourceAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Go(func() {
			n, err := exchange(c, byte(i), udpFlowDatagrams, udpFlowWindow, maxPayload)
			moved.Add(2 * n)
			if err != nil {
				t.Errorf("flow %d of %d: %v", i, udpFlows, err)
			}
		})
	}
	wg.Wait()
	res.moved += moved.Load()
	c := l.counters(countNS, "filter", "ACCT")
	res.directBytes, res.serverBytes = c["direct"], c["server"]
	res.route = judgeRoute(res.directBytes, res.serverBytes, res.moved)

	res.maxPayload = checkOversize(t, srcNS, bulk, echo)
	if p.mtu > 0 {
		// The outer packet must fit the link unfragmented: IPv4 and UDP
		// headers, the least QUIC adds, the flow header.
		fit := p.mtu - 28 - minQUICOverhead - flowHeader
		if res.maxPayload > fit || res.maxPayload <= 1000 {
			t.Errorf("max_payload %d on a %d-byte MTU path, want 1000 < max_payload <= %d", res.maxPayload, p.mtu, fit)
		}
	}

	if s, err := status(srcNS); err == nil {
		st = s
	}
	u := st.Sources[0].UDP
	if u == nil {
		t.Fatalf("the source reports no udp status")
	}
	if u.FlowsRefused != 0 || u.DroppedOther != 0 {
		t.Errorf("source: %d flows refused, %d datagrams dropped (other than oversize)", u.FlowsRefused, u.DroppedOther)
	}
	if u.Flows != 1+udpFlows {
		t.Errorf("source reports %d flows, want %d", u.Flows, 1+udpFlows)
	}
	var paths []string
	for _, b := range st.Sources[0].Peers[0].ByPath {
		paths = append(paths, fmt.Sprintf("%s %d/%d", b.Path, b.BytesOut, b.BytesIn))
	}
	res.note = fmt.Sprintf("%d B payload; max_payload first src %d dst %d; by path (out/in) %s", res.moved, maxPayload, dstMax, strings.Join(paths, ", "))
	return res
}

// firstMaxPayload waits until both ends report a max_payload, which
// path MTU discovery grows as traffic flows.
func firstMaxPayload(t *testing.T, srcNS, dstNS string) (src, dst int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		s, err1 := status(srcNS)
		d, err2 := status(dstNS)
		if err1 != nil || err2 != nil || len(s.Sources) == 0 || len(d.Destinations) == 0 ||
			s.Sources[0].UDP == nil || d.Destinations[0].UDP == nil {
			continue
		}
		src, dst = s.Sources[0].UDP.MaxPayload, d.Destinations[0].UDP.MaxPayload
		if src > 0 && dst > 0 {
			return src, dst
		}
	}
	t.Fatalf("no max_payload within 10s (source %d, destination %d)", src, dst)
	return
}

// exchange sends n datagrams of random sizes up to most bytes on c, at
// most window unanswered, and checks each echo by content: each carries
// tag (its flow) and a sequence number. It returns the payload bytes sent.
func exchange(c *net.UDPConn, tag byte, n, window, most int) (int64, error) {
	const hdr = 5
	sent := make([][]byte, n)
	slots := make(chan struct{}, window)
	done := make(chan error, 1)
	go func() {
		got := make([]bool, n)
		buf := make([]byte, 65536)
		for count := 0; count < n; {
			_ = c.SetReadDeadline(time.Now().Add(udpReplyWait))
			m, err := c.Read(buf)
			if err != nil {
				done <- fmt.Errorf("%d of %d echoes came back (%v)", count, n, err)
				return
			}
			r := buf[:m]
			if m < hdr || r[0] != tag {
				done <- fmt.Errorf("an echo not of this flow (%d B, tag %v)", m, r[:min(m, 1)])
				return
			}
			seq := binary.BigEndian.Uint32(r[1:hdr])
			if int(seq) >= n || got[seq] || !bytes.Equal(r, sent[seq]) {
				done <- fmt.Errorf("echo %d (%d B) does not match what was sent, or came twice", seq, m)
				return
			}
			got[seq] = true
			count++
			<-slots
		}
		done <- nil
	}()
	var total int64
	for i := range n {
		b := make([]byte, hdr+mrand.IntN(most-hdr+1))
		_, _ = rand.Read(b[hdr:])
		b[0] = tag
		binary.BigEndian.PutUint32(b[1:hdr], uint32(i))
		sent[i] = b
		select {
		case slots <- struct{}{}:
		case err := <-done:
			return total, err
		}
		if _, err := c.Write(b); err != nil {
			return total, err
		}
		total += int64(len(b))
	}
	return total, <-done
}

// checkOversize reads the source's max_payload, then sends a datagram
// of exactly that many bytes, one of a byte more, and one of max again:
// the first and last must come back, the other must be counted in
// dropped_oversize and never reach the echo service. Path MTU discovery
// grows max_payload while traffic flows, so an attempt during which it
// changed is repeated. It returns the max_payload checked.
func checkOversize(t *testing.T, srcNS string, c *net.UDPConn, echo *echoServer) int {
	t.Helper()
	var problems []string
	for attempt := 1; attempt <= 3; attempt++ {
		most, before := udpStatus(t, srcNS)
		echo.largest.Store(0)
		problems = nil
		exact := func(seq byte) {
			b := make([]byte, most)
			_, _ = rand.Read(b)
			b[0] = seq
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 65536)
			_ = c.SetReadDeadline(time.Now().Add(udpReplyWait))
			n, err := c.Read(buf)
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				problems = append(problems, fmt.Sprintf("a datagram of exactly max_payload (%d B) did not come back", most))
			case err != nil:
				t.Fatal(err)
			case !bytes.Equal(buf[:n], b):
				problems = append(problems, fmt.Sprintf("got a %d-byte echo starting %d, want the %d-byte one starting %d", n, buf[0], most, seq))
			}
		}
		exact(0xf0)
		if _, err := c.Write(make([]byte, most+1)); err != nil {
			t.Fatal(err)
		}
		exact(0xf1)
		if got := echo.largest.Load(); got > int64(most) {
			problems = append(problems, fmt.Sprintf("the echo service got a %d-byte datagram, more than max_payload %d", got, most))
		}
		after, dropped := udpStatus(t, srcNS)
		if d := dropped - before; d != 1 {
			problems = append(problems, fmt.Sprintf("dropped_oversize rose by %d after one datagram of max_payload+1, want 1", d))
		}
		if len(problems) == 0 {
			return most
		}
		if after == most {
			break
		}
		t.Logf("max_payload moved from %d to %d during the check (%s); again", most, after, strings.Join(problems, "; "))
	}
	for _, p := range problems {
		t.Error(p)
	}
	most, _ := udpStatus(t, srcNS)
	return most
}

// udpStatus reads the source's max_payload and dropped_oversize.
func udpStatus(t *testing.T, ns string) (maxPayload int, oversize int64) {
	t.Helper()
	st, err := status(ns)
	if err != nil || len(st.Sources) == 0 || st.Sources[0].UDP == nil {
		t.Fatalf("source status: %v", err)
	}
	return st.Sources[0].UDP.MaxPayload, st.Sources[0].UDP.DroppedOversize
}
