package main

import (
	"fmt"
	"io"
	"runtime"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func perSec(n int, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(n)/d.Seconds())
}

func secs(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", d.Seconds())
}

func printScaleReport(out io.Writer, o scaleOpts, r *scaleResults) {
	fmt.Fprintf(out, "connetd control-plane scale: %d control nodes + %d-member etcd on loopback, %d CPUs, %s, load avg %s before / %s after\n",
		scaleNodes, scaleNodes, runtime.NumCPU(), runtime.Version(), r.loadBefore, r.loadAft)
	fmt.Fprintf(out, "%d synthetic clients round-robin over the nodes, %d endpoints (%d names × source + destination, always on different nodes)\n",
		r.clients, 2*r.names, r.names)

	var t table
	t.add("REGISTRATION", "count", "seconds", "per second")
	t.add("clients connected + welcomed", fmt.Sprint(r.connected), secs(r.connectDur), perSec(r.connected, r.connectDur))
	t.add("endpoints announced → every node lists all (status polled 0.5 s)", fmt.Sprint(r.announced), secs(r.announceDur), perSec(r.announced, r.announceDur))
	t.add("endpoints announced → every source told its peer", fmt.Sprint(2*r.served), secs(r.servedDur), perSec(2*int(r.served), r.servedDur))
	fmt.Fprintln(out)
	t.print(out)

	t = table{}
	t.add("CROSS-NODE PEERS LATENCY (ms)", "samples", "p50", "p99", "max", "failed")
	t.add("announce → source's peers lists it", fmt.Sprint(len(r.lat)), ms(percentile(r.lat, 50)), ms(percentile(r.lat, 99)),
		ms(percentile(r.lat, 100)), fmt.Sprint(r.latFailed))
	t.add("withdraw → source's peers empty", fmt.Sprint(len(r.withdrawLat)), ms(percentile(r.withdrawLat, 50)),
		ms(percentile(r.withdrawLat, 99)), ms(percentile(r.withdrawLat, 100)), "-")
	fmt.Fprintln(out)
	t.print(out)

	t = table{}
	// The status request is timed once per node after registration: a
	// full JSON status of every client and endpoint the node knows.
	t.add("RSS (MiB)", "idle", "connected", "registered", "idle anon", "connected anon", "registered anon", "status GET ms")
	for i, n := range r.nodes {
		if i < len(r.nodeIdle) && i < len(r.nodeLoaded) {
			get := "-"
			if i < len(r.statusGet) {
				get = ms(r.statusGet[i])
			}
			var conn memKB
			if i < len(r.nodeConnected) {
				conn = r.nodeConnected[i]
			}
			t.add("control "+n, mib(r.nodeIdle[i].rss), mib(conn.rss), mib(r.nodeLoaded[i].rss),
				mib(r.nodeIdle[i].anon), mib(conn.anon), mib(r.nodeLoaded[i].anon), get)
		}
	}
	for i := range r.etcdIdle {
		if i < len(r.etcdLoaded) {
			t.add(fmt.Sprintf("etcd e%d", i), mib(r.etcdIdle[i].rss), "-", mib(r.etcdLoaded[i].rss), mib(r.etcdIdle[i].anon), "-", mib(r.etcdLoaded[i].anon), "-")
		}
	}
	fmt.Fprintln(out)
	t.print(out)

	t = table{}
	t.add("ETCD", "value")
	t.add("keys under "+scalePrefix, fmt.Sprint(r.keys))
	t.add("database size (MiB)", fmt.Sprintf("%.1f", float64(r.dbSize)/(1<<20)))
	fmt.Fprintln(out)
	t.print(out)

	p99 := percentile(r.lat, 99)
	t = table{}
	t.add("TARGETS", "value", "target", "result")
	t.add("announce→peers p99 across nodes", ms(p99)+" ms", fmt.Sprintf("≤ %.0f ms", float64(latencyTarget)/float64(time.Millisecond)),
		verdict(len(r.lat) > 0 && r.latFailed == 0 && p99 <= latencyTarget))
	t.add("clients registered", fmt.Sprintf("%d / %d", r.connected, r.clients), "all", verdict(r.connected == r.clients))
	t.add("sources served their cross-node peer", fmt.Sprintf("%d / %d", r.served, r.names), "all", verdict(r.served == int64(r.names)))
	fmt.Fprintln(out)
	t.print(out)
	if len(r.notes) > 0 {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "NOTES")
		for _, n := range r.notes {
			fmt.Fprintln(out, "- "+n)
		}
	}
}
