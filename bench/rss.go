package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rssKB reads VmRSS (in kB) from /proc/PID/status.
func rssKB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of pid %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest) // "12345 kB"
		if len(fields) < 1 {
			break
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("rss of pid %d: parse %q: %w", pid, rest, err)
		}
		return kb, nil
	}
	return 0, fmt.Errorf("rss of pid %d: no VmRSS line", pid)
}

// rssSampler records the peak RSS of some processes while a load runs.
type rssSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	peak map[int]int64 // pid → kB
}

// sampleRSS polls every 50ms, often enough to catch buffers that grow and
// shrink within a multi-second transfer.
func sampleRSS(pids []int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), peak: map[int]int64{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			s.sample(pids)
			select {
			case <-s.stop:
				s.sample(pids)
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) sample(pids []int) {
	for _, pid := range pids {
		kb, err := rssKB(pid)
		if err != nil {
			continue // an exited process shows up as a failed transfer instead
		}
		s.mu.Lock()
		s.peak[pid] = max(s.peak[pid], kb)
		s.mu.Unlock()
	}
}

// done stops sampling and returns the peaks.
func (s *rssSampler) done() map[int]int64 {
	close(s.stop)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}
