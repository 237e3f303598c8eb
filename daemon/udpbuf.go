package daemon

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// quic-go asks for 7 MiB socket buffers; the sysctl values are the ones its
// documentation recommends (and units/sysctl.d ships).
const (
	wantBuffer = 7 << 20
	wantMax    = 7500000
)

// BufferSize is what the kernel reports for a socket's buffers (it counts
// its own bookkeeping, so a 7 MiB request reads back as about 14 MiB).
type BufferSize struct {
	Receive int `json:"receive"`
	Send    int `json:"send"`
}

// tuneUDP gives conn the buffers QUIC needs and reports what it got. With
// tune on and privileges, it raises the sysctl limits (never lowers them) and
// uses the FORCE options that ignore them. It never fails: a small buffer
// costs throughput, not correctness.
func tuneUDP(conn *net.UDPConn, tune bool, log *slog.Logger) BufferSize {
	priv := tune && privileged()
	if priv {
		raiseSysctl("/proc/sys/net/core/rmem_max", wantMax, log)
		raiseSysctl("/proc/sys/net/core/wmem_max", wantMax, log)
	}
	var got BufferSize
	rc, err := conn.SyscallConn()
	if err != nil {
		return got
	}
	_ = rc.Control(func(fd uintptr) {
		set := func(opt, force int) int {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, wantBuffer)
			if priv {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, wantBuffer)
			}
			v, _ := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt)
			return v
		}
		got.Receive = set(unix.SO_RCVBUF, unix.SO_RCVBUFFORCE)
		got.Send = set(unix.SO_SNDBUF, unix.SO_SNDBUFFORCE)
	})
	args := []any{"addr", conn.LocalAddr().String(), "receive", got.Receive, "send", got.Send}
	if got.Receive < wantBuffer || got.Send < wantBuffer {
		log.Warn("UDP socket buffers are smaller than QUIC wants; install the sysctl.d drop-in or run with tune-udp-buffers and CAP_NET_ADMIN",
			append(args, "want", wantBuffer)...)
	} else {
		log.Info("UDP socket buffers", args...)
	}
	return got
}

// privileged reports root or CAP_NET_ADMIN in the effective set.
func privileged() bool {
	if os.Geteuid() == 0 {
		return true
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
			return err == nil && caps&(1<<unix.CAP_NET_ADMIN) != 0
		}
	}
	return false
}

// raiseSysctl writes min to path if the current value is lower. Under
// ProtectKernelTunables= /proc/sys is read-only: that is fine, the socket
// units and the sysctl.d drop-in cover that case.
func raiseSysctl(path string, min int, log *slog.Logger) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || cur >= min {
		return
	}
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%d\n", min)), 0); err != nil {
		if !os.IsPermission(err) && !isReadOnly(err) {
			log.Debug("cannot raise sysctl", "path", path, "err", err)
		}
		return
	}
	log.Info("raised sysctl for QUIC", "path", path, "from", cur, "to", min)
}

func isReadOnly(err error) bool {
	var errno syscall.Errno
	if pe, ok := err.(*os.PathError); ok {
		errno, _ = pe.Err.(syscall.Errno)
	}
	return errno == syscall.EROFS
}
