package metrics

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The process_ families keep the names and help texts of client_golang's
// process collector. Left out: its network byte counters, which read the
// whole network namespace's, not the process's.
var (
	processCPU        = newDesc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", counterKind)
	processOpenFDs    = newDesc("process_open_fds", "Number of open file descriptors.", gaugeKind)
	processMaxFDs     = newDesc("process_max_fds", "Maximum number of open file descriptors.", gaugeKind)
	processVirtual    = newDesc("process_virtual_memory_bytes", "Virtual memory size in bytes.", gaugeKind)
	processVirtualMax = newDesc("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", gaugeKind)
	processResident   = newDesc("process_resident_memory_bytes", "Resident memory size in bytes.", gaugeKind)
	processStart      = newDesc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", gaugeKind)
)

var processDescs = []*desc{processCPU, processOpenFDs, processMaxFDs, processVirtual, processVirtualMax, processResident, processStart}

// userHZ is the kernel's USER_HZ, the unit of /proc's CPU times: 100 on
// every architecture Linux runs Go on (procfs assumes the same).
const userHZ = 100

// collectProcess adds the process_ families from /proc/self; a part that
// cannot be read leaves its families out (and says why, for the log).
func collectProcess(s *sink) error {
	var errs []error
	if st, err := readProcStat(); err != nil {
		errs = append(errs, err)
	} else {
		s.add(processCPU, counterKind, sample{value: float64(st.utime+st.stime) / userHZ})
		gauge(s, processVirtual, float64(st.vsize))
		gauge(s, processResident, float64(st.rss*uint64(os.Getpagesize())))
		if btime, err := readBootTime(); err != nil {
			errs = append(errs, err)
		} else {
			gauge(s, processStart, float64(btime)+float64(st.starttime)/userHZ)
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err != nil {
		errs = append(errs, fmt.Errorf("count open fds: %w", err))
	} else {
		// Less the one ReadDir had open while it read.
		gauge(s, processOpenFDs, float64(len(fds)-1))
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		gauge(s, processMaxFDs, float64(lim.Cur))
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &lim); err == nil {
		gauge(s, processVirtualMax, float64(lim.Cur))
	}
	if len(errs) > 0 {
		return fmt.Errorf("process metrics: %v", errs)
	}
	return nil
}

type procStat struct{ utime, stime, starttime, vsize, rss uint64 }

// readProcStat reads the fields of /proc/self/stat we use, counted after
// the command name, which may itself hold spaces and parentheses.
func readProcStat() (procStat, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return procStat{}, fmt.Errorf("read stat: %w", err)
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/self/stat: no command name")
	}
	// Fields from 3 (state) on: utime is 14, stime 15, starttime 22,
	// vsize 23, rss 24 (proc(5)).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("parse /proc/self/stat: %d fields", len(f)+2)
	}
	var st procStat
	for _, x := range []struct {
		field int
		to    *uint64
	}{{14, &st.utime}, {15, &st.stime}, {22, &st.starttime}, {23, &st.vsize}, {24, &st.rss}} {
		v, err := strconv.ParseUint(f[x.field-3], 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("parse /proc/self/stat field %d: %w", x.field, err)
		}
		*x.to = v
	}
	return st, nil
}

// readBootTime is the btime of /proc/stat: starttime counts from boot.
func readBootTime() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read boot time: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse btime: %w", err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no btime in /proc/stat")
}
