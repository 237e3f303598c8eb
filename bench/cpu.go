package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat times; 100 on every
// Linux architecture Go supports.
const clockTick = 100

// cpuSeconds returns user+system CPU time used so far by pid.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; fields after it are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu of pid %d: malformed stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so utime (14) and stime (15) are f[11], f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu of pid %d: short stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu of pid %d: parse utime/stime %q %q", pid, f[11], f[12])
	}
	return float64(ut+st) / clockTick, nil
}

// cpuMeter snapshots the CPU time of named processes around a run.
type cpuMeter struct {
	pids  map[string]int
	start map[string]float64
}

func startCPU(pids map[string]int) *cpuMeter {
	m := &cpuMeter{pids: pids, start: map[string]float64{}}
	for name, pid := range pids {
		if s, err := cpuSeconds(pid); err == nil {
			m.start[name] = s
		}
	}
	return m
}

// stop adds each process's CPU seconds since start to acc.
func (m *cpuMeter) stop(acc map[string]float64) {
	for name, pid := range m.pids {
		s, err := cpuSeconds(pid)
		if err != nil {
			continue
		}
		acc[name] += s - m.start[name]
	}
}
