package natlab

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/connetd/connetd/internal/testenv"
)

// nsPrefix starts the name of every namespace the lab makes; the process
// ID follows, so that namespaces left by a crashed run can be told apart
// from those of a run still going.
const nsPrefix = "cndlab"

// needRoot skips a test that cannot build namespaces here (under CI it
// fails: see package testenv).
func needRoot(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t, "create the NAT lab's network namespaces")
	testenv.RequireTool(t, "ip", "iproute2")
	testenv.RequireTool(t, "iptables", "iptables")
	testenv.RequireTool(t, "sysctl", "procps")
}

// removeStale deletes namespaces of earlier lab runs whose process is gone.
func removeStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name := strings.Fields(sc.Text())
		if len(name) == 0 || !strings.HasPrefix(name[0], nsPrefix) {
			continue
		}
		pidPart, _, _ := strings.Cut(strings.TrimPrefix(name[0], nsPrefix), "-")
		pid, err := strconv.Atoi(pidPart)
		if err == nil && pid != os.Getpid() {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				continue // that run is still going
			}
		}
		if err == nil && pid == os.Getpid() {
			continue
		}
		_ = exec.Command("ip", "netns", "del", name[0]).Run()
	}
}

// world tracks what the lab created, to remove it all at the end.
type world struct {
	t   *testing.T
	nss []string
}

func newWorld(t *testing.T) *world {
	removeStale()
	w := &world{t: t}
	t.Cleanup(w.destroy)
	return w
}

// destroy removes every namespace; their links, iptables state and
// processes' sockets go with them.
func (w *world) destroy() {
	for i := len(w.nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", w.nss[i]).CombinedOutput(); err != nil {
			w.t.Logf("remove namespace %s: %v: %s", w.nss[i], err, out)
		}
	}
	w.nss = nil
}

// ns creates a namespace with loopback up and forwarding off.
func (w *world) ns(short string) string {
	w.t.Helper()
	name := fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), short)
	_ = exec.Command("ip", "netns", "del", name).Run()
	w.must("ip", "netns", "add", name)
	w.nss = append(w.nss, name)
	w.in(name, "ip", "link", "set", "lo", "up")
	return name
}

func (w *world) must(args ...string) string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		w.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// try runs a command inside namespace ns and reports whether it failed.
func (w *world) try(ns string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).Run()
}

// in runs a command inside namespace ns.
func (w *world) in(ns string, args ...string) string {
	w.t.Helper()
	return w.must(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// link connects two namespaces with a veth pair and addresses each end.
func (w *world) link(nsA, ifA, addrA, nsB, ifB, addrB string) {
	w.t.Helper()
	tmp := fmt.Sprintf("v%d", len(w.nss)*100+int(time.Now().UnixNano()%100))
	w.must("ip", "-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", tmp)
	w.must("ip", "-n", nsA, "link", "set", tmp, "netns", nsB)
	w.must("ip", "-n", nsB, "link", "set", tmp, "name", ifB)
	for _, e := range [][3]string{{nsA, ifA, addrA}, {nsB, ifB, addrB}} {
		if e[2] != "" {
			w.must("ip", "-n", e[0], "addr", "add", e[2], "dev", e[1])
		}
		w.must("ip", "-n", e[0], "link", "set", e[1], "up")
	}
}

func (w *world) sysctl(ns, kv string) {
	w.t.Helper()
	w.in(ns, "sysctl", "-q", "-w", kv)
}

// inNS runs f on a thread inside namespace ns; sockets f makes stay in
// ns.
func inNS(ns string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		panic(fmt.Sprintf("cannot return to the test's network namespace: %v", err))
	}
	return ferr
}

// dialIn opens a TCP connection from inside namespace ns.
func dialIn(ns, addr string, timeout time.Duration) (c net.Conn, err error) {
	err = inNS(ns, func() error {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// udpIn opens a UDP socket inside namespace ns: bound to laddr when raddr
// is "", else connected to raddr from an ephemeral port.
func udpIn(ns, laddr, raddr string) (c *net.UDPConn, err error) {
	err = inNS(ns, func() error {
		var nc net.Conn
		if raddr == "" {
			var pc net.PacketConn
			pc, err = net.ListenPacket("udp4", laddr)
			if err == nil {
				c = pc.(*net.UDPConn)
			}
			return err
		}
		nc, err = net.Dial("udp4", raddr)
		if err == nil {
			c = nc.(*net.UDPConn)
		}
		return err
	})
	return c, err
}
