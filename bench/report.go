package main

import (
	"fmt"
	"io"
	"runtime"
	"time"
)

var routeLabel = map[string]string{
	rTCP:    "raw TCP",
	rQUIC:   "bare quic-go",
	rFwd:    "quic-go via forwarder",
	rDirect: "connetd direct",
	rRelay:  "connetd relay",
	// UDP
	rUDPRaw:    "raw UDP",
	rUDPDirect: "connetd direct UDP",
	rUDPRelay:  "connetd relay UDP",
}

// udpTCPRoute is the TCP route a UDP route's latency is compared with.
var udpTCPRoute = map[string]string{rUDPRaw: rTCP, rUDPDirect: rDirect, rUDPRelay: rRelay}

func us(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond)) }

func mib(kb int64) string { return fmt.Sprintf("%.1f", float64(kb)/1024) }

func printReport(out io.Writer, o opts, res *results) {
	fmt.Fprintf(out, "connetd bench: loopback, %d CPUs, %s, load avg %s before / %s after\n",
		runtime.NumCPU(), runtime.Version(), res.loadBefore, res.loadAfter)
	fmt.Fprintf(out, "throughput: one connection, %d MiB or %v, best of %d; echo: %d × %d B; new connections: %d\n",
		o.size>>20, o.duration, o.repeat, o.rounds, echoSize, o.conns)

	var t table
	t.add("THROUGHPUT", "MB/s", "MiB sent", "seconds")
	for _, r := range []string{rTCP, rQUIC, rFwd, rDirect, rRelay} {
		tp := res.tput[r]
		t.add(routeLabel[r], fmt.Sprintf("%.1f", tp.mbps()), fmt.Sprintf("%.0f", float64(tp.bytes)/(1<<20)),
			fmt.Sprintf("%.2f", tp.elapsed.Seconds()))
	}
	fmt.Fprintln(out)
	t.print(out)

	t = table{}
	t.add("LATENCY (µs)", "echo p50", "echo p99", "conn+echo p50", "conn+echo p99")
	for _, r := range []string{rTCP, rDirect, rRelay} {
		t.add(routeLabel[r], us(percentile(res.echo[r], 50)), us(percentile(res.echo[r], 99)),
			us(percentile(res.conn[r], 50)), us(percentile(res.conn[r], 99)))
	}
	fmt.Fprintln(out)
	t.print(out)

	printUDP(out, o, res)

	t = table{}
	// "anon" is the process's own memory (heap, stacks, the runtime's,
	// relocated data); the rest of RSS is file pages, mostly the binary's,
	// which the connetd processes share.
	t.add("RSS (MiB)", "idle", "load direct", "load relay", "load max", "idle anon", "load anon")
	for _, p := range res.rss {
		t.add(p.name, mib(p.idle), mib(p.direct), mib(p.relay), mib(max(p.direct, p.relay)), mib(p.idleAnon), mib(p.loadAnon))
	}
	fmt.Fprintln(out)
	t.print(out)

	t = table{}
	cols := []string{cpuBench, cpuQUICChild, cpuForwarder}
	for _, p := range res.rss {
		cols = append(cols, p.name)
	}
	t.add(append(append([]string{"CPU (s per GB)"}, cols...), "total")...)
	for _, r := range []string{rTCP, rQUIC, rFwd, rDirect, rRelay, rUDPRaw, rUDPDirect, rUDPRelay} {
		row := []string{routeLabel[r]}
		gb := float64(res.cpuBytes[r]) / 1e9
		total := 0.0
		for _, c := range cols {
			v, ok := res.cpu[r][c]
			if !ok || gb == 0 {
				row = append(row, "-")
				continue
			}
			total += v
			row = append(row, fmt.Sprintf("%.2f", v/gb))
		}
		if gb > 0 {
			row = append(row, fmt.Sprintf("%.2f", total/gb))
		} else {
			row = append(row, "-")
		}
		t.add(row...)
	}
	fmt.Fprintln(out)
	t.print(out)
	fmt.Fprintln(out, "(bench = this process: TCP sender and sink; for bare quic-go, the QUIC sender only;")
	fmt.Fprintln(out, " forwarder = a TURN-like relay: a port per peer pair, packets unframed, GRO in and GSO out;")
	fmt.Fprintln(out, " UDP rows: the reported ≤1%-loss trial, per GB delivered; bench = UDP sender and sink)")
	if gb, io := float64(res.cpuBytes[rRelay])/1e9, res.relayIO; gb > 0 && io.Reads > 0 {
		fmt.Fprintf(out, "relay route: the relay forwarded %.0f datagrams and read %.0f times per GB (%.1f datagrams per read)\n",
			float64(io.Packets)/gb, float64(io.Reads)/gb, float64(io.ReadDatagrams)/float64(io.Reads))
	}

	direct, relay, bare := res.tput[rDirect].mbps(), res.tput[rRelay].mbps(), res.tput[rQUIC].mbps()
	p50 := percentile(res.echo[rDirect], 50)
	echoRatio := ratio(float64(percentile(res.echo[rRelay], 50)), float64(p50))
	connRatio := ratio(float64(percentile(res.conn[rRelay], 50)), float64(percentile(res.conn[rDirect], 50)))
	relayCPU := -1.0
	if gb := float64(res.cpuBytes[rRelay]) / 1e9; gb > 0 {
		if v, ok := res.cpu[rRelay]["server"]; ok {
			relayCPU = v / gb
		}
	}
	t = table{}
	t.add("TARGETS", "value", "target", "result")
	t.add("direct / bare quic-go throughput", fmt.Sprintf("%.2f×", ratio(direct, bare)), "≥ 0.90×", verdict(ratio(direct, bare) >= 0.9))
	t.add("relay / direct throughput", fmt.Sprintf("%.2f×", ratio(relay, direct)), "≥ 0.80×", verdict(ratio(relay, direct) >= 0.8))
	t.add("relay / bare quic-go throughput", fmt.Sprintf("%.2f×", ratio(relay, bare)), "≥ 0.55×", verdict(ratio(relay, bare) >= 0.55))
	t.add("relay / direct echo p50", fmt.Sprintf("%.2f×", echoRatio), "≤ 1.30×", verdict(echoRatio <= 1.3))
	t.add("relay / direct conn+echo p50", fmt.Sprintf("%.2f×", connRatio), "≤ 1.30×", verdict(connRatio <= 1.3))
	t.add("relay server CPU", fmt.Sprintf("%.2f s/GB", relayCPU), "≤ 1.00 s/GB", verdict(relayCPU >= 0 && relayCPU <= 1.0))
	t.add("direct echo p50", us(p50)+" µs", "≤ 110 µs", verdict(p50 <= 110*time.Microsecond))
	udpDirect := res.udp[rUDPDirect].best.mbps()
	t.add("direct UDP ≤1% loss / bare quic-go throughput", fmt.Sprintf("%.2f×", ratio(udpDirect, bare)), "≥ 0.70×",
		verdict(ratio(udpDirect, bare) >= 0.7))
	for _, r := range []string{rUDPDirect, rUDPRelay} {
		v := udpEchoRatio(res, r)
		t.add(fmt.Sprintf("%s rr p50 / TCP echo p50", routeLabel[r]), fmt.Sprintf("%.2f×", v), "≤ 1.20×", verdict(v > 0 && v <= 1.2))
	}
	fmt.Fprintln(out)
	t.print(out)
}

// printUDP prints the UDP throughput and request/response tables.
func printUDP(out io.Writer, o opts, res *results) {
	udpRoutes := []string{rUDPRaw, rUDPDirect, rUDPRelay}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "UDP: highest rate with ≤ %.0f%% loss (by sequence number at the sink), %v trials, up to %d per route;\n",
		100*udpMaxLoss, o.udpTrial, udpTrials)
	fmt.Fprintf(out, "request/response: %d × %d B, one outstanding; TCP echo p50 of the same route for comparison\n",
		o.rounds, echoSize)
	var t table
	t.add("UDP THROUGHPUT", "MB/s", "offered MB/s", "loss %", "payload B", "trials")
	t.add(routeLabel[rQUIC]+" (stream)", fmt.Sprintf("%.1f", res.tput[rQUIC].mbps()), "-", "-", "-", "-")
	for _, r := range udpRoutes {
		u := res.udp[r]
		t.add(routeLabel[r], fmt.Sprintf("%.1f", u.best.mbps()), fmt.Sprintf("%.1f", u.best.offered),
			fmt.Sprintf("%.2f", 100*u.best.loss()), fmt.Sprint(u.size), fmt.Sprint(u.trials))
	}
	fmt.Fprintln(out)
	t.print(out)

	t = table{}
	t.add("UDP REQ/RESP (µs)", "p50", "p99", "lost", "TCP echo p50", "p50 / TCP")
	for _, r := range udpRoutes {
		u := res.udp[r]
		t.add(routeLabel[r], us(percentile(u.echo, 50)), us(percentile(u.echo, 99)), fmt.Sprint(u.lost),
			us(percentile(res.echo[udpTCPRoute[r]], 50)), fmt.Sprintf("%.2f×", udpEchoRatio(res, r)))
	}
	fmt.Fprintln(out)
	t.print(out)
}

// udpEchoRatio is UDP route r's request/response p50 over the TCP echo
// p50 of the same route.
func udpEchoRatio(res *results, r string) float64 {
	return ratio(float64(percentile(res.udp[r].echo, 50)), float64(percentile(res.echo[udpTCPRoute[r]], 50)))
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
