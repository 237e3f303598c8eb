package metrics

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// The process_ values are this process's: started recently, resident,
// with the descriptors it has open.
func TestProcessMetricsAreThisProcess(t *testing.T) {
	f, err := os.Open("/proc/self/stat") // one more descriptor to see
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := newSink()
	if err := collectProcess(s); err != nil {
		t.Fatal(err)
	}
	v := func(d *desc) float64 {
		fam := s.families[d.name]
		if fam == nil || len(fam.samples) != 1 {
			t.Fatalf("no %s", d.name)
		}
		return fam.samples[0].value
	}
	start := time.Unix(int64(v(processStart)), 0)
	if since := time.Since(start); since < -2*time.Second || since > time.Hour {
		t.Errorf("start time %v, %v ago", start, since)
	}
	if rss, vsz := v(processResident), v(processVirtual); rss < 1<<20 || vsz < rss {
		t.Errorf("resident %v, virtual %v", rss, vsz)
	}
	fds, _ := os.ReadDir("/proc/self/fd")
	if open := v(processOpenFDs); open < 4 || open > float64(len(fds)) || v(processMaxFDs) < open {
		t.Errorf("open fds %v (ReadDir sees %d with its own), max %v", open, len(fds), v(processMaxFDs))
	}
	// Burn some CPU: the counter moves by about as much.
	before := v(processCPU)
	for t0 := time.Now(); time.Since(t0) < 300*time.Millisecond; {
		runtime.Gosched()
	}
	s = newSink()
	collectProcess(s)
	if used := v(processCPU) - before; used < 0.1 {
		t.Errorf("process_cpu_seconds_total moved %v over 0.3 s of spinning", used)
	}
}

// The command name may hold spaces and parentheses: fields count from
// the last ')'.
func TestParseProcStatOddName(t *testing.T) {
	line := "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 1 2 3 4 150 50 0 0 20 0 9 0 12345 987654 321 18446744073709551615\n"
	st, err := parseProcStat([]byte(line))
	if want := (procStat{utime: 150, stime: 50, starttime: 12345, vsize: 987654, rss: 321}); err != nil || st != want {
		t.Fatalf("got %+v, %v; want %+v", st, err, want)
	}
	if _, err := parseProcStat([]byte("4242 (a) S 1 2")); err == nil {
		t.Fatal("a short line parsed")
	}
}
