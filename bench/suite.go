package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"
)

// measureAll runs every measurement; any error means something broke.
func measureAll(ctx context.Context, o opts, cl *cluster, target string, usrv *udpServer, certFile, keyFile string) (*results, error) {
	res := &results{tput: map[string]throughput{}, echo: map[string][]time.Duration{}, conn: map[string][]time.Duration{},
		udp: map[string]udpResult{}, loadBefore: loadAvg(), cpu: map[string]map[string]float64{}, cpuBytes: map[string]int64{}}
	addrs := map[string]string{rTCP: target, rDirect: cl.srcDirect, rRelay: cl.srcRelay}
	procs := cl.procs()

	// Let start-up allocations settle before calling the processes idle.
	time.Sleep(time.Second)
	for _, p := range procs {
		kb, err := rssKB(p.pid())
		if err != nil {
			return nil, err
		}
		res.rss = append(res.rss, procRSS{name: p.name, idle: kb.rss, idleAnon: kb.anon})
	}

	// Rounds interleave the routes so that a burst of load from elsewhere on
	// the machine hits all of them alike; each route keeps its best run.
	for rep := 1; rep <= o.repeat; rep++ {
		for _, r := range []string{rTCP, rQUIC, rFwd, rDirect, rRelay} {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("interrupted: %w", err)
			}
			if res.cpu[r] == nil {
				res.cpu[r] = map[string]float64{}
			}
			var before relayStatusJSON
			if r == rRelay {
				var err error
				if before, err = cl.relayCounters(ctx); err != nil {
					return nil, err
				}
			}
			t, err := measureThroughput(ctx, o, r, addrs[r], certFile, keyFile, procs, res.rss, res.cpu[r])
			if err == nil && r == rRelay {
				var after relayStatusJSON
				if after, err = cl.relayCounters(ctx); err == nil {
					res.relayIO.Packets += after.Packets - before.Packets
					res.relayIO.Reads += after.Reads - before.Reads
					res.relayIO.ReadDatagrams += after.ReadDatagrams - before.ReadDatagrams
				}
			}
			if err != nil {
				return nil, fmt.Errorf("throughput via %s (run %d): %w", r, rep, err)
			}
			log.Printf("throughput via %s (run %d/%d): %d bytes in %v: %.1f MB/s",
				r, rep, o.repeat, t.bytes, t.elapsed.Round(time.Millisecond), t.mbps())
			res.cpuBytes[r] += t.bytes
			if t.mbps() > res.tput[r].mbps() {
				res.tput[r] = t
			}
		}
	}

	for _, r := range []string{rTCP, rDirect, rRelay} {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interrupted: %w", err)
		}
		log.Printf("echo latency via %s (%d rounds)", r, o.rounds)
		lat, err := echoLatency(addrs[r], echoWarmup, o.rounds)
		if err != nil {
			return nil, fmt.Errorf("echo via %s: %w", r, err)
		}
		res.echo[r] = lat
	}

	for _, r := range []string{rTCP, rDirect, rRelay} {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interrupted: %w", err)
		}
		log.Printf("new connection + echo via %s (%d connections)", r, o.conns)
		lat, err := connectLatency(addrs[r], connWarmup, o.conns)
		if err != nil {
			return nil, fmt.Errorf("new connection via %s: %w", r, err)
		}
		res.conn[r] = lat
	}

	for _, r := range []string{rUDPRaw, rUDPDirect, rUDPRelay} {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interrupted: %w", err)
		}
		if err := measureUDP(ctx, o, cl, usrv, r, procs, res); err != nil {
			return nil, fmt.Errorf("udp via %s: %w", r, err)
		}
	}

	for _, p := range procs {
		if p.exited() {
			return nil, fmt.Errorf("%s exited during the run: %v", p.name, p.err)
		}
	}
	res.loadAfter = loadAvg()
	return res, nil
}

// measureThroughput runs one transfer and adds the CPU time it cost to cpu;
// on connetd routes it also samples RSS and raises the peaks in rss.
func measureThroughput(ctx context.Context, o opts, r, addr, certFile, keyFile string, procs []*proc, rss []procRSS, cpu map[string]float64) (throughput, error) {
	if r == rQUIC || r == rFwd {
		return quicThroughput(ctx, certFile, keyFile, o.size, o.duration, r == rFwd, cpu)
	}
	if r == rTCP {
		m := startCPU(cpuPIDs(nil))
		defer m.stop(cpu)
		return tcpThroughput(addr, o.size, o.duration)
	}
	pids := cpuPIDs(procs)
	list := make([]int, len(procs))
	for i, p := range procs {
		list[i] = p.pid()
	}
	s := sampleRSS(list)
	m := startCPU(pids)
	t, err := tcpThroughput(addr, o.size, o.duration)
	m.stop(cpu)
	peaks := s.done()
	for i := range rss {
		peak := &rss[i].direct
		if r == rRelay {
			peak = &rss[i].relay
		}
		*peak = max(*peak, peaks[list[i]].rss)
		rss[i].loadAnon = max(rss[i].loadAnon, peaks[list[i]].anon)
	}
	return t, err
}

// cpuPIDs names this process and procs for a cpuMeter.
func cpuPIDs(procs []*proc) map[string]int {
	pids := map[string]int{cpuBench: os.Getpid()}
	for _, p := range procs {
		pids[p.name] = p.pid()
	}
	return pids
}

// measureUDP finds route r's UDP throughput at ≤1% loss, keeping the CPU
// time of the trial it reports, and times its request/response exchanges.
func measureUDP(ctx context.Context, o opts, cl *cluster, usrv *udpServer, r string, procs []*proc, res *results) error {
	addr := map[string]string{rUDPRaw: usrv.addr(), rUDPDirect: cl.udpDirect, rUDPRelay: cl.udpRelay}[r]
	u := udpResult{size: udpPayloadMax}
	if r == rUDPRaw {
		procs = nil
	} else {
		st, err := cl.udpSourceStatus(ctx, r)
		if err != nil {
			return err
		}
		if st.MaxPayload <= udpHeader {
			return fmt.Errorf("source %s carries datagrams of at most %d bytes", r, st.MaxPayload)
		}
		u.size = min(u.size, st.MaxPayload)
	}
	trial := func(rate float64) (udpTrial, error) {
		if err := ctx.Err(); err != nil {
			return udpTrial{}, err
		}
		m := startCPU(cpuPIDs(procs))
		t, err := runUDPTrial(usrv, addr, u.size, rate, o.udpTrial)
		t.cpu = map[string]float64{}
		m.stop(t.cpu)
		log.Printf("udp via %s: offered %.1f MB/s, delivered %.1f MB/s, loss %.2f%% (%d of %d datagrams of %d B)",
			r, t.offered, t.mbps(), 100*t.loss(), t.sent-t.received, t.sent, u.size)
		return t, err
	}
	var err error
	if u.best, u.trials, err = udpThroughput(trial); err != nil {
		return err
	}
	res.cpu[r] = u.best.cpu
	res.cpuBytes[r] = u.best.bytes

	log.Printf("udp request/response via %s (%d rounds)", r, o.rounds)
	if u.echo, u.lost, err = udpEchoLatency(addr, echoWarmup, o.rounds); err != nil {
		return err
	}
	res.udp[r] = u
	return nil
}

// loadAvg is the 1-minute load average, or "?" where /proc has none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}
