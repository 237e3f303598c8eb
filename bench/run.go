package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"
)

// Route names, in table order. "tcp" is client→bench server directly and
// "quic" the bare quic-go stream between two processes.
const (
	rTCP    = "tcp"
	rQUIC   = "quic"
	rFwd    = "quicfwd" // bare quic-go through the TURN-like forwarder
	rDirect = "direct"
	rRelay  = "relay"
	// UDP routes: the bench's UDP socket directly, and through connetd.
	rUDPRaw    = "udp"
	rUDPDirect = "udp-direct"
	rUDPRelay  = "udp-relay"
)

// procRSS is one connetd process's memory, in kB.
type procRSS struct {
	name                string
	idle, direct, relay int64 // idle, and peaks under the direct/relay transfers
	// The anonymous part (RssAnon): idle, and its peak under either load.
	idleAnon, loadAnon int64
}

type results struct {
	tput map[string]throughput
	echo map[string][]time.Duration
	conn map[string][]time.Duration
	udp  map[string]udpResult
	rss  []procRSS
	// CPU seconds per process name, summed over a route's runs, and the
	// bytes those runs moved: CPU cost per byte explains throughput gaps on
	// a machine with few cores.
	cpu      map[string]map[string]float64
	cpuBytes map[string]int64
	// 1-minute load averages around the measurements: other work on the
	// machine skews the numbers, and the reader should see how much.
	loadBefore, loadAfter string
	// relayIO is the relay's forwarded datagrams and socket reads over
	// the relay route's throughput runs: what its CPU per GB pays for.
	relayIO relayStatusJSON
}

// CPU table columns besides the connetd process names.
const (
	cpuBench     = "bench"         // this process: TCP sender and sink, or QUIC sender
	cpuQUICChild = "quic receiver" // the bare quic-go child
	cpuForwarder = "forwarder"     // the TURN-like forwarder child
)

const (
	echoWarmup = 200
	connWarmup = 20
)

func run(ctx context.Context, o opts) (res *results, err error) {
	dir, certFile, keyFile, bin, cleanup, err := prepare(ctx, o.connetd, o.keep, "connetd-bench-")
	if err != nil {
		return nil, err
	}
	defer cleanup()

	srv, err := startBenchServer()
	if err != nil {
		return nil, err
	}
	defer srv.close()

	usrv, err := startUDPServer()
	if err != nil {
		return nil, err
	}
	defer usrv.close()

	log.Printf("starting connetd server and clients (dir %s)", dir)
	cl, err := startCluster(bin, dir, certFile, keyFile, srv.addr(), usrv.addr())
	defer func() {
		if err != nil && cl != nil && ctx.Err() == nil {
			cl.logFailureTails()
		}
		if cl != nil {
			log.Printf("stopping connetd processes")
			cl.stop()
		}
	}()
	if err != nil {
		return nil, err
	}
	if err := cl.waitReady(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	log.Printf("both paths up")
	return measureAll(ctx, o, cl, srv.addr(), usrv, certFile, keyFile)
}

// prepare makes a run's temp dir (removed by cleanup unless keep), the
// certificate the servers present, and the connetd binary (connetd, or
// built into dir).
func prepare(ctx context.Context, connetd string, keep bool, prefix string) (dir, certFile, keyFile, bin string, cleanup func(), err error) {
	if dir, err = os.MkdirTemp("", prefix); err != nil {
		return "", "", "", "", nil, fmt.Errorf("temp dir: %w", err)
	}
	cleanup = func() {
		if keep {
			log.Printf("kept %s", dir)
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			log.Printf("remove %s: %v", dir, rerr)
		}
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err = writeCert(certFile, keyFile); err == nil {
		bin = connetd
		if bin == "" {
			log.Printf("building ./cmd/connetd")
			bin, err = buildConnetd(ctx, dir)
		}
	}
	if err != nil {
		cleanup()
		return "", "", "", "", nil, err
	}
	return dir, certFile, keyFile, bin, cleanup, nil
}
