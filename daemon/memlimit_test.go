package daemon

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// fakeRoot writes files (path → content) below a temporary root.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCgroupMemoryMax(t *testing.T) {
	const unit = "/system.slice/system-connetd.slice/connetd@src.service"
	v2 := "0::" + unit + "\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
		file  string // below root
	}{
		{"v2 unit limit", map[string]string{
			"proc/self/cgroup":                        v2,
			"sys/fs/cgroup" + unit + "/memory.max":    "67108864\n",
			"sys/fs/cgroup/system.slice/memory.max":   "max\n",
			"sys/fs/cgroup/system.slice/memory.min":   "0\n",
			"sys/fs/cgroup/system.slice/cgroup.procs": "",
		}, 64 << 20, "sys/fs/cgroup" + unit + "/memory.max"},
		{"v2 no limit", map[string]string{
			"proc/self/cgroup":                      v2,
			"sys/fs/cgroup" + unit + "/memory.max":  "max\n",
			"sys/fs/cgroup/system.slice/memory.max": "max\n",
		}, 0, ""},
		{"v2 smaller limit on the slice", map[string]string{
			"proc/self/cgroup":                                           v2,
			"sys/fs/cgroup" + unit + "/memory.max":                       "134217728\n",
			"sys/fs/cgroup/system.slice/system-connetd.slice/memory.max": "100000000\n",
			"sys/fs/cgroup/system.slice/memory.max":                      "max\n",
		}, 100000000, "sys/fs/cgroup/system.slice/system-connetd.slice/memory.max"},
		{"v2 without the memory controller", map[string]string{
			"proc/self/cgroup":                      v2,
			"sys/fs/cgroup/system.slice/memory.max": "1000000\n",
		}, 0, ""},
		{"v1 hybrid host", map[string]string{
			"proc/self/cgroup": "4:memory:" + unit + "\n3:cpu,cpuacct:/x\n0::" + unit + "\n",
			"sys/fs/cgroup/memory" + unit + "/memory.limit_in_bytes": "33554432\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":             "9223372036854771712\n",
		}, 32 << 20, "sys/fs/cgroup/memory" + unit + "/memory.limit_in_bytes"},
		{"v1 container without a cgroup namespace", map[string]string{
			"proc/self/cgroup": "4:memory:/machine.slice/machine-x.scope/payload" + unit + "\n",
			"sys/fs/cgroup/memory" + unit + "/memory.limit_in_bytes":  "33554432\n",
			"sys/fs/cgroup/memory/system.slice/memory.limit_in_bytes": "9223372036854771712\n",
		}, 32 << 20, "sys/fs/cgroup/memory" + unit + "/memory.limit_in_bytes"},
		{"v1 unlimited", map[string]string{
			"proc/self/cgroup": "4:memory:" + unit + "\n",
			"sys/fs/cgroup/memory" + unit + "/memory.limit_in_bytes": "9223372036854771712\n",
		}, 0, ""},
		{"root cgroup", map[string]string{
			"proc/self/cgroup": "0::/\n",
		}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, tc.files)
			got, file, err := cgroupMemoryMax(root)
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if tc.file != "" {
				want = filepath.Join(root, tc.file)
			}
			if got != tc.want || file != want {
				t.Errorf("got %d from %q, want %d from %q", got, file, tc.want, want)
			}
		})
	}
}

func TestCgroupMemoryMaxErrors(t *testing.T) {
	if _, _, err := cgroupMemoryMax(t.TempDir()); err == nil {
		t.Error("no /proc/self/cgroup: want an error")
	}
	root := fakeRoot(t, map[string]string{
		"proc/self/cgroup":                   "0::/a.service\n",
		"sys/fs/cgroup/a.service/memory.max": "lots\n",
	})
	if _, _, err := cgroupMemoryMax(root); err == nil {
		t.Error("unparsable memory.max: want an error")
	}
}

func TestGoMemoryLimit(t *testing.T) {
	for _, tc := range []struct{ max, want int64 }{
		{64 << 20, 56 << 20},              // the 8 MiB minimum headroom
		{256 << 20, 256<<20 - 256<<20/10}, // a tenth
		{4 << 30, 4<<30 - 64<<20},         // the 64 MiB maximum headroom
		{12 << 20, 6 << 20},               // never below half
	} {
		if got := goMemoryLimit(tc.max); got != tc.want {
			t.Errorf("goMemoryLimit(%d) = %d, want %d", tc.max, got, tc.want)
		}
	}
}

func TestSetMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	root := fakeRoot(t, map[string]string{
		"proc/self/cgroup": "0::/connetd@src.service\n",
		"sys/fs/cgroup/connetd@src.service/memory.max": "67108864\n",
	})
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))

	t.Setenv("GOMEMLIMIT", "")
	setMemoryLimit(log, root)
	if got := debug.SetMemoryLimit(-1); got != 56<<20 {
		t.Errorf("Go memory limit %d, want %d", got, 56<<20)
	}
	if !strings.Contains(buf.String(), "memory_max=67108864 go_memory_limit=58720256") {
		t.Errorf("log: %s", buf.String())
	}

	// GOMEMLIMIT wins: the runtime read it at start, we leave it alone.
	debug.SetMemoryLimit(prev)
	buf.Reset()
	t.Setenv("GOMEMLIMIT", "100MiB")
	setMemoryLimit(log, root)
	if got := debug.SetMemoryLimit(-1); got != prev {
		t.Errorf("with GOMEMLIMIT set the limit changed to %d", got)
	}
	if !strings.Contains(buf.String(), "gomemlimit=100MiB") {
		t.Errorf("log: %s", buf.String())
	}
}
