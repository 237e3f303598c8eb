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

// memKB is a process's resident memory in kB: all of it (VmRSS), and its
// anonymous part (RssAnon). The rest is file pages, mostly the binary's own:
// shared by every connetd process and reclaimable, and on kernels that map
// whole large folios of the page cache nearly the whole binary.
type memKB struct{ rss, anon int64 }

// rssKB reads VmRSS and RssAnon (in kB) from /proc/PID/status.
func rssKB(pid int) (memKB, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memKB{}, fmt.Errorf("rss of pid %d: %w", pid, err)
	}
	defer f.Close()
	var m memKB
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		var dst *int64
		switch {
		case !ok:
			continue
		case key == "VmRSS":
			dst = &m.rss
		case key == "RssAnon":
			dst = &m.anon
		default:
			continue
		}
		fields := strings.Fields(rest) // "12345 kB"
		if len(fields) < 1 {
			break
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return memKB{}, fmt.Errorf("rss of pid %d: parse %q: %w", pid, rest, err)
		}
		*dst = kb
		if found++; found == 2 {
			return m, nil
		}
	}
	return memKB{}, fmt.Errorf("rss of pid %d: no VmRSS and RssAnon lines", pid)
}

// rssSampler records the peak RSS of some processes while a load runs.
type rssSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	peak map[int]memKB // pid → peaks, each on its own
}

// sampleRSS polls every 50ms, often enough to catch buffers that grow and
// shrink within a multi-second transfer.
func sampleRSS(pids []int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), peak: map[int]memKB{}}
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
		p := s.peak[pid]
		s.peak[pid] = memKB{rss: max(p.rss, kb.rss), anon: max(p.anon, kb.anon)}
		s.mu.Unlock()
	}
}

// done stops sampling and returns the peaks.
func (s *rssSampler) done() map[int]memKB {
	close(s.stop)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}
