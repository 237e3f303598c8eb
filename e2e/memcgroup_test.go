package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/testenv"
)

// memCgroup is a memory cgroup this test made, with its limit set: a
// directory of the v2 tree, or of the v1 memory hierarchy on hosts that
// still mount one (these machines do).
type memCgroup struct {
	dir      string
	limit    string // the file holding the limit: memory.max or memory.limit_in_bytes
	peakFile string // the high-water mark: memory.peak or memory.max_usage_in_bytes
}

// newMemCgroup makes a memory cgroup limited to max bytes below the root of
// whichever hierarchy has the memory controller, and removes it at cleanup
// (after the processes in it have been stopped: cleanups run in reverse).
func newMemCgroup(t *testing.T, max int64) *memCgroup {
	t.Helper()
	name := fmt.Sprintf("connetd-e2e-%d", os.Getpid())
	var cg memCgroup
	switch {
	case fileExists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
		cg = memCgroup{dir: filepath.Join("/sys/fs/cgroup/memory", name), limit: "memory.limit_in_bytes", peakFile: "memory.max_usage_in_bytes"}
	case controllerEnabled("/sys/fs/cgroup/cgroup.subtree_control", "memory"):
		cg = memCgroup{dir: filepath.Join("/sys/fs/cgroup", name), limit: "memory.max", peakFile: "memory.peak"}
	default:
		testenv.Missing(t, "no memory cgroup controller to put a daemon under a memory limit (neither /sys/fs/cgroup/memory nor memory in the v2 root's subtree_control)")
	}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		t.Fatalf("make memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		// The cgroup can only go once it is empty: its daemon may still be
		// exiting for a moment after stop.
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := os.Remove(cg.dir)
			if err == nil || time.Now().After(deadline) {
				if err != nil {
					t.Errorf("remove memory cgroup %s: %v", cg.dir, err)
				}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	if err := os.WriteFile(filepath.Join(cg.dir, cg.limit), []byte(strconv.FormatInt(max, 10)), 0o644); err != nil {
		t.Fatalf("set memory limit: %v", err)
	}
	return &cg
}

// command wraps argv so that it runs inside the cgroup from its first
// instruction: a shell moves itself in, then execs (same PID, same
// arguments for isConnetd).
func (cg *memCgroup) command(argv ...string) *exec.Cmd {
	script := `echo $$ >"$1" && shift && exec "$@"`
	return exec.Command("sh", append([]string{"-c", script, "sh", filepath.Join(cg.dir, "cgroup.procs")}, argv...)...)
}

// peak is the cgroup's memory high-water mark in bytes, or -1 when the
// kernel has none to report (memory.peak is from Linux 5.19).
func (cg *memCgroup) peak() int64 {
	b, err := os.ReadFile(filepath.Join(cg.dir, cg.peakFile))
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func controllerEnabled(file, controller string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		if sc.Text() == controller {
			return true
		}
	}
	return false
}

// A unit's MemoryMax= is a memory cgroup limit: the daemon must find it,
// set its Go memory limit below it (the 8 MiB minimum headroom here), and
// carry traffic within it. The booted appliance cannot check this on a
// host whose memory controller is cgroup v1 (its container gets no
// controller of its own), so this test makes the cgroup itself.
func TestSourceUnderAMemoryCgroupLimitSetsGoMemoryLimitAndCarriesTraffic(t *testing.T) {
	testenv.RequireRoot(t, "making a memory cgroup")
	const limit = 32 << 20
	cg := newMemCgroup(t, limit)

	tp := newTopology(t, endpoint{name: "web"})
	tp.startEcho(t)
	tp.startServer(t)
	tp.dst = tp.connetd(t, "dst", "--config", "dst.toml")
	cmd := cg.command(filepath.Join(binDir, "connetd"), "--config", "src.toml")
	cmd.Dir = tp.dir
	cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+filepath.Join(tp.dir, "state-src"))
	tp.src = startCmd(t, "src", cmd)

	tp.src.waitLog(t, "Go memory limit set below the cgroup's memory limit", 10*time.Second)
	line := logLine(tp.src.out.String(), "Go memory limit set below the cgroup's memory limit")
	for _, want := range []string{
		"memory_max=" + strconv.Itoa(limit),
		"go_memory_limit=" + strconv.Itoa(limit-8<<20),
		"cgroup_file=" + filepath.Join(cg.dir, cg.limit),
	} {
		if !strings.Contains(line, want) {
			t.Errorf("the daemon's memory-limit line lacks %q:\n%s", want, line)
		}
	}

	waitPath(t, addr(tp.srcStatus), "web", "direct", 15*time.Second)
	payload := make([]byte, 8<<20)
	_, _ = rand.Read(payload)
	got, err := echoRoundTrip(tp.srcAddr("web"), payload)
	if err != nil {
		t.Fatalf("8 MiB through the source under a %d MiB limit: %v", limit>>20, err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("8 MiB through the source under a %d MiB limit: %d bytes came back, not the same", limit>>20, len(got))
	}
	t.Logf("source's cgroup: limit %d MiB, peak %.1f MiB (-1: not reported)", limit>>20, float64(cg.peak())/(1<<20))
}

// logLine is the last line of out that contains s.
func logLine(out, s string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}
