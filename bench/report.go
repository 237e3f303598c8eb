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
}

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

	t = table{}
	t.add("RSS (MiB)", "idle", "load direct", "load relay", "load max")
	for _, p := range res.rss {
		t.add(p.name, mib(p.idle), mib(p.direct), mib(p.relay), mib(max(p.direct, p.relay)))
	}
	fmt.Fprintln(out)
	t.print(out)

	t = table{}
	cols := []string{cpuBench, cpuQUICChild, cpuForwarder}
	for _, p := range res.rss {
		cols = append(cols, p.name)
	}
	t.add(append(append([]string{"CPU (s per GB)"}, cols...), "total")...)
	for _, r := range []string{rTCP, rQUIC, rFwd, rDirect, rRelay} {
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
	fmt.Fprintln(out, " forwarder = a TURN-like relay: a port per peer pair, packets unframed, GRO in and GSO out)")

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
	fmt.Fprintln(out)
	t.print(out)
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
