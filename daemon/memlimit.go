package daemon

import (
	"bufio"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// The Go memory limit below a cgroup's memory limit (the unit's
// MemoryMax=). Without it the Go runtime grows its heap to twice the live
// data (GOGC=100) with no idea of the cgroup's ceiling, and a burst (many
// flows, a big transfer) ends with the kernel's OOM killer instead of a
// runtime that collects harder as the ceiling comes near.
//
// The Go limit covers only what the Go runtime maps (heap, stacks, its own
// metadata). The cgroup charges more: the kernel's socket buffers of our
// UDP sockets (up to net.core.rmem_max, 7.5 MB with the package's sysctl
// drop-in, for each socket whose reader falls behind), the page cache of
// the binary and of files we write, and the runtime overshoots a soft limit
// briefly before it catches up. So the Go limit leaves headroom: a tenth of
// the cgroup limit, but at least memLimitMinHeadroom (a tenth of a small
// limit such as 64 MiB would not hold even one full socket buffer) and at
// most memLimitMaxHeadroom (a tenth of 4 GiB would waste 400 MiB); and
// never less than half the cgroup limit for a tiny one.
const (
	memLimitMinHeadroom = 8 << 20
	memLimitMaxHeadroom = 64 << 20
)

// gcPercent is the garbage collector's target (GOGC) unless GOGC is set:
// the heap may grow by half the live data between collections, not by all
// of it. A client moving 1 Gbit/s holds ~4 MiB live; at GOGC=100 its heap
// peaked near twice that, at 50 about 2.5 MiB lower (bench: client RSS
// under load 28 → 25 MiB), for some 6 collections a second of ~1 ms CPU
// each instead of 2: about 1% of one core, with no change in throughput.
// Idle, the heap is below the runtime's 4 MiB minimum anyway (2 MiB at 50).
const gcPercent = 50

// goMemoryLimit is the Go memory limit for a cgroup memory limit of max bytes.
func goMemoryLimit(maxBytes int64) int64 {
	headroom := min(max(maxBytes/10, memLimitMinHeadroom), memLimitMaxHeadroom)
	return max(maxBytes-headroom, maxBytes/2)
}

// cgroupMemoryMax returns the memory limit (bytes) of the cgroup the process
// runs in, as seen below root ("/" in production; a fake tree in tests): the
// smallest limit of the cgroup and its ancestors, and the file it came from.
// It reads cgroup v2 (memory.max, "max" meaning none) and, on hosts still
// running the v1 memory controller, memory.limit_in_bytes. limit is 0 when
// there is none.
func cgroupMemoryMax(root string) (limit int64, file string, err error) {
	f, err := os.Open(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	var v2, v1 string
	haveV2, haveV1 := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2, haveV2 = parts[2], true
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			v1, haveV1 = parts[2], true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, "", err
	}
	base := filepath.Join(root, "sys/fs/cgroup")
	if haveV2 {
		// On a unified host the memory controller is in the v2 tree; on a
		// hybrid one the v2 tree (if mounted here at all) has none and the
		// v1 memory hierarchy below decides.
		if limit, file, found, err := smallestLimit(base, v2, "memory.max"); found || err != nil {
			return limit, file, err
		}
	}
	if haveV1 {
		limit, file, _, err := smallestLimit(filepath.Join(base, "memory"), v1, "memory.limit_in_bytes")
		return limit, file, err
	}
	return 0, "", nil
}

// v1Unlimited: the v1 controller reports "no limit" as a huge number
// (PAGE_COUNTER_MAX pages, just below 2^63); anything from 2^62 up is none.
const v1Unlimited = 1 << 62

// smallestLimit walks from the cgroup at cg (below base) up to base and
// returns the smallest limit in name; found reports whether the cgroup's own
// file exists (a controller that is not there has no limit to report).
func smallestLimit(base, cg, name string) (limit int64, file string, found bool, err error) {
	cg = mountedPath(base, path.Clean("/"+cg))
	for dir := cg; ; dir = path.Dir(dir) {
		p := filepath.Join(base, filepath.FromSlash(dir), name)
		b, rerr := os.ReadFile(p)
		switch {
		case errors.Is(rerr, fs.ErrNotExist):
			// The root cgroup has no limit file; a missing leaf means no
			// controller (or a path from outside our cgroup namespace).
		case rerr != nil:
			return 0, "", found, rerr
		default:
			if dir == cg {
				found = true
			}
			s := strings.TrimSpace(string(b))
			if s != "max" {
				n, perr := strconv.ParseInt(s, 10, 64)
				if perr != nil {
					return 0, "", found, perr
				}
				if n > 0 && n < v1Unlimited && (limit == 0 || n < limit) {
					limit, file = n, p
				}
			}
		}
		if dir == "/" {
			return limit, file, found, nil
		}
		if !found && dir == cg {
			// No controller file for our own cgroup: do not look further
			// up (an ancestor in the same tree would not be ours either).
			return 0, "", false, nil
		}
	}
}

// mountedPath is cg as found below base. Without a cgroup namespace (a
// container on a v1 hierarchy, for one) /proc/self/cgroup shows the host's
// full path while only the container's subtree is mounted: then the longest
// suffix of cg (at least one component) that exists below base is ours.
func mountedPath(base, cg string) string {
	if _, err := os.Stat(filepath.Join(base, filepath.FromSlash(cg))); err == nil || cg == "/" {
		return cg
	}
	for rest := strings.TrimPrefix(cg, "/"); ; {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return cg
		}
		rest = rest[i+1:]
		if _, err := os.Stat(filepath.Join(base, filepath.FromSlash(rest))); err == nil {
			return "/" + rest
		}
	}
}

// setGCPercent sets the collector's target to gcPercent unless GOGC in the
// environment set one.
func setGCPercent(log *slog.Logger) {
	if env := os.Getenv("GOGC"); env != "" {
		log.Debug("GC target from GOGC", "gogc", env)
		return
	}
	debug.SetGCPercent(gcPercent)
}

// setMemoryLimit sets the Go memory limit below the cgroup's memory limit,
// unless GOMEMLIMIT in the environment already set one, and logs what it did.
func setMemoryLimit(log *slog.Logger, root string) {
	limit, file, err := cgroupMemoryMax(root)
	if err != nil {
		log.Debug("cgroup memory limit not read", "err", err)
		return
	}
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		log.Info("Go memory limit from GOMEMLIMIT", "gomemlimit", env, "go_memory_limit", debug.SetMemoryLimit(-1), "memory_max", limit)
		return
	}
	if limit == 0 {
		return
	}
	goLimit := goMemoryLimit(limit)
	debug.SetMemoryLimit(goLimit)
	log.Info("Go memory limit set below the cgroup's memory limit", "memory_max", limit, "go_memory_limit", goLimit, "cgroup_file", file)
}
