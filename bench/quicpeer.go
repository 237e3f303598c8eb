package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/quicconf"
)

// quicChildCmd is the hidden subcommand that runs the bare quic-go receiver.
const quicChildCmd = "__quic-receiver"

const quicALPN = "connetd-bench"

// quicChild accepts one connection and one stream, counts its bytes until
// FIN and replies with the count, like the bench server's sink mode. It
// prints its address on stdout and exits when stdin closes, so it cannot
// outlive a crashed parent.
func quicChild(args []string) error {
	fs := flag.NewFlagSet(quicChildCmd, flag.ContinueOnError)
	certFile := fs.String("cert", "", "certificate PEM")
	keyFile := fs.String("key", "", "key PEM")
	if err := fs.Parse(args); err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	tlsConf, err := serverTLS(*certFile, *keyFile)
	if err != nil {
		return err
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, quicconf.Peer())
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	fmt.Printf("ADDR %s\n", ln.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := ln.Accept(ctx)
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	st, err := conn.AcceptStream(ctx)
	if err != nil {
		return fmt.Errorf("accept stream: %w", err)
	}
	n, err := drain(st)
	if err != nil {
		return err
	}
	var reply [8]byte
	binary.BigEndian.PutUint64(reply[:], uint64(n))
	if _, err := st.Write(reply[:]); err != nil {
		return fmt.Errorf("write count: %w", err)
	}
	_ = st.Close()
	// Stay until the sender has the count and closes the connection.
	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
	}
	return nil
}

// quicStream adapts a quic-go stream: Close sends FIN, i.e. a half-close.
type quicStream struct{ *quic.Stream }

func (s quicStream) CloseWrite() error { return s.Stream.Close() }

// child is a helper process of this binary that reports an address.
type child struct {
	addr string
	pid  int
	stop func()
}

// startChild runs this binary with args; the child prints "ADDR host:port"
// and exits when its stdin closes.
func startChild(args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("child stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("child stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	done := make(chan error, 1)
	addrc := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		addrc <- strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
		_, _ = io.Copy(io.Discard, stdout) // Wait needs the pipe drained
		done <- cmd.Wait()
	}()
	c := &child{pid: cmd.Process.Pid, stop: func() {
		stdin.Close() // the child exits on stdin EOF
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}}
	log.Printf("started %s child (pid %d)", args[0], c.pid)
	select {
	case c.addr = <-addrc:
	case <-time.After(10 * time.Second):
		c.stop()
		return nil, fmt.Errorf("%s child did not report its address within 10s", args[0])
	}
	if c.addr == "" {
		c.stop()
		return nil, fmt.Errorf("%s child exited before listening", args[0])
	}
	return c, nil
}

// quicThroughput starts the receiver child and sends one counted stream to
// it with the same quic.Config connetd uses between peers; viaForwarder
// puts the TURN-like forwarder child between them.
//
// The CPU time of every process during the transfer is added to cpu.
func quicThroughput(ctx context.Context, certFile, keyFile string, size int64, duration time.Duration, viaForwarder bool, cpu map[string]float64) (throughput, error) {
	rcv, err := startChild(quicChildCmd, "-cert", certFile, "-key", keyFile)
	if err != nil {
		return throughput{}, err
	}
	defer rcv.stop()
	pids := map[string]int{cpuBench: os.Getpid(), cpuQUICChild: rcv.pid}
	addr := rcv.addr
	if viaForwarder {
		fwd, err := startChild(fwdChildCmd, "-to", rcv.addr)
		if err != nil {
			return throughput{}, err
		}
		defer fwd.stop()
		pids[cpuForwarder], addr = fwd.pid, fwd.addr
	}
	tlsConf, err := clientTLS(certFile)
	if err != nil {
		return throughput{}, err
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(dctx, addr, tlsConf, quicconf.Peer())
	if err != nil {
		return throughput{}, fmt.Errorf("dial quic child %s: %w", addr, err)
	}
	defer conn.CloseWithError(0, "done")
	st, err := conn.OpenStreamSync(dctx)
	if err != nil {
		return throughput{}, fmt.Errorf("open stream: %w", err)
	}
	_ = st.SetDeadline(time.Now().Add(duration + 60*time.Second))
	m := startCPU(pids)
	t, err := sendCounted(quicStream{st}, nil, size, duration)
	m.stop(cpu) // before the children are told to exit, while their stat exists
	return t, err
}
