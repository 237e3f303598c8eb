// Command bench measures connetd's data plane against raw loopback TCP and a
// bare quic-go stream, all on 127.0.0.1, and prints one table. It is run by
// `make bench`. A missed target is reported, never an error: the exit status
// is non-zero only when the setup or a connection breaks.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// opts are the knobs of one run.
type opts struct {
	size     int64         // throughput: stop after this many bytes...
	duration time.Duration // ...or after this long, whichever first
	repeat   int           // throughput runs per route; the best counts
	rounds   int           // echo round trips per route
	conns    int           // new-connection iterations per route
	udpTrial time.Duration // UDP throughput: length of one trial
	connetd  string        // prebuilt connetd binary; empty builds one
	keep     bool          // keep the temp dir for inspection
	scale    bool          // run only the control-plane scale section
}

func main() {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("bench: ")
	// The bare quic-go receiver runs as a child process of this same binary,
	// so that the baseline crosses a process boundary like connetd does.
	if len(os.Args) > 1 && os.Args[1] == fwdChildCmd {
		if err := fwdChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench forwarder child:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == quicChildCmd {
		if err := quicChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench quic child:", err)
			os.Exit(1)
		}
		return
	}
	var o opts
	flag.Int64Var(&o.size, "size", 256<<20, "throughput: bytes per run (the run also stops at -duration)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "throughput: maximum time per run")
	flag.IntVar(&o.repeat, "repeat", 3, "throughput runs per route, interleaved; the best is reported")
	flag.IntVar(&o.rounds, "rounds", 2000, "echo round trips per route (after warm-up)")
	flag.IntVar(&o.conns, "conns", 300, "new-connection+echo iterations per route")
	flag.DurationVar(&o.udpTrial, "udp-trial", time.Second, "UDP throughput: length of one trial of the loss search")
	flag.StringVar(&o.connetd, "connetd", "", "use this connetd binary instead of building ./cmd/connetd")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, logs) after the run")
	flag.BoolVar(&o.scale, "scale", false, "run only the control-plane scale section (3 control nodes on etcd, synthetic clients)")
	so := scaleOpts{}
	flag.IntVar(&so.clients, "scale-clients", 5000, "scale: synthetic clients, round-robin over the 3 control nodes")
	flag.IntVar(&so.endpoints, "scale-endpoints", 10000, "scale: endpoints, half sources and half destinations of as many names")
	flag.IntVar(&so.sample, "scale-sample", 500, "scale: endpoints whose announce→peers latency is timed")
	flag.IntVar(&so.conc, "scale-concurrency", 64, "scale: client handshakes in flight")
	flag.DurationVar(&so.budget, "scale-budget", 4*time.Minute, "scale: the whole scale run's time limit")
	flag.Parse()
	if o.size <= 0 || o.duration <= 0 || o.rounds <= 0 || o.repeat <= 0 || o.conns <= 0 || o.udpTrial <= 0 {
		log.Fatal("-size, -duration, -repeat, -rounds, -conns and -udp-trial must be positive")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.scale {
		if so.conc <= 0 || so.sample < 0 || so.budget <= 0 {
			log.Fatal("-scale-concurrency and -scale-budget must be positive, -scale-sample not negative")
		}
		so.connetd, so.keep = o.connetd, o.keep
		res, err := runScale(ctx, so)
		if err != nil {
			log.Printf("FAILED: %v", err)
			os.Exit(1)
		}
		printScaleReport(os.Stdout, so, res)
		return
	}
	res, err := run(ctx, o)
	if err != nil {
		log.Printf("FAILED: %v", err)
		os.Exit(1)
	}
	printReport(os.Stdout, o, res)
}
