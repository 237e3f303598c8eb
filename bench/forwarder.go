package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fwdChildCmd is the hidden subcommand that runs the TURN-like forwarder:
// the baseline for a relay that gives each peer pair a port of its own, so
// the peers' packets travel unframed and unchanged. It is the best case of
// that design: UDP GRO on both sockets, and every joined read sent on as
// it is with GSO, so a burst costs one read and one send.
const fwdChildCmd = "__udp-forwarder"

// fwdChild forwards between the first sender on its front socket and the
// address -to, from its back socket. It prints the front address on
// stdout and exits when stdin closes, so it cannot outlive a crashed parent.
func fwdChild(args []string) error {
	fs := flag.NewFlagSet(fwdChildCmd, flag.ContinueOnError)
	toAddr := fs.String("to", "", "the receiver's address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	to, err := net.ResolveUDPAddr("udp", *toAddr)
	if err != nil {
		return fmt.Errorf("receiver address: %w", err)
	}
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	back, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	for _, c := range []*net.UDPConn{front, back} {
		if err := setGRO(c); err != nil {
			return fmt.Errorf("UDP_GRO: %w", err)
		}
	}
	fmt.Printf("ADDR %s\n", front.LocalAddr())
	var sender atomic.Pointer[net.UDPAddr]
	var wg sync.WaitGroup
	wg.Go(func() { pump(front, back, func(from *net.UDPAddr) *net.UDPAddr { sender.Store(from); return to }) })
	wg.Go(func() { pump(back, front, func(*net.UDPAddr) *net.UDPAddr { return sender.Load() }) })
	_, _ = io.Copy(io.Discard, os.Stdin)
	front.Close()
	back.Close()
	wg.Wait()
	return nil
}

func setGRO(c *net.UDPConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) }); err != nil {
		return err
	}
	return serr
}

// pump forwards every datagram read on in, joined ones as one GSO send.
func pump(in, out *net.UDPConn, route func(*net.UDPAddr) *net.UDPAddr) {
	buf := make([]byte, 1<<16)
	oob := make([]byte, 128)
	seg := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&seg[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	for {
		n, oobn, _, from, err := in.ReadMsgUDP(buf, oob)
		if err != nil {
			return
		}
		dst := route(from)
		if dst == nil {
			continue
		}
		var cm []byte
		if size := groSize(oob[:oobn]); size > 0 && size < n {
			binary.NativeEndian.PutUint16(seg[unix.CmsgLen(0):], uint16(size))
			cm = seg
		}
		_, _, _ = out.WriteMsgUDP(buf[:n], cm, dst)
	}
}

// groSize is the segment size of a read GRO joined, or 0.
func groSize(oob []byte) int {
	for len(oob) > 0 {
		hdr, body, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if hdr.Level == unix.SOL_UDP && hdr.Type == unix.UDP_GRO && len(body) >= 4 {
			return int(binary.NativeEndian.Uint32(body))
		}
		oob = rest
	}
	return 0
}
