package natlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/testfdstore"
)

// TestRestartNAT restarts a destination behind an easy NAT the way systemd
// restarts a unit with FileDescriptorStoreMax=: the daemon's sockets go to
// a file descriptor store (a fake notify socket here) and come back as
// LISTEN_FDS; its identity stays in its state directory. The source
// (direct route only) must carry a new connection within 1 s of the
// restart without punching again. It builds a lab of its own, so it runs
// alone.
func TestRestartNAT(t *testing.T) {
	l, dir := labWithServer(t, `log-level = "debug"`)
	sum := payload(t, dir, "small.bin", 16<<10)
	src, dst := l.sites["easy1"], l.sites["easy2"]
	pdir := filepath.Join(dir, "restart")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, pdir, "dst.toml", clientConf(dir, fmt.Sprintf("[client.destinations.lab]\naddr = \"127.0.0.1:3000\"\nfile-server-root = %q\n", filepath.Join(dir, "www"))))
	write(t, pdir, "src.toml", clientConf(dir, "[client.sources.lab]\naddr = \"127.0.0.1:8000\"\nroute = \"direct\"\n"))
	srcNS, dstNS := src.clients[0], dst.clients[0]
	bin := filepath.Join(binDir, "connetd")
	store := testfdstore.New(t)
	env := []string{"NOTIFY_SOCKET=" + store.Path(), "STATE_DIRECTORY=" + filepath.Join(pdir, "state-dst")}
	dstP := l.startWith(t, dstNS, "connetd-dst", pdir, env, nil, bin, "--config", filepath.Join(pdir, "dst.toml"))
	started := time.Now()
	l.start(t, srcNS, "connetd-src", pdir, bin, "--config", filepath.Join(pdir, "src.toml"))
	if _, ttd := waitDirect(t, srcNS, started, directWait); ttd < 0 {
		t.Fatalf("easy→easy never went direct")
	}
	if got, _, err := fetch(srcNS, "small.bin", 0, 10*time.Second); err != nil || got != sum {
		t.Fatalf("fetch before the restart: %v", err)
	}
	st, err := status(srcNS)
	if err != nil {
		t.Fatal(err)
	}
	punches := st.Sources[0].Peers[0].PunchAttempts

	dstP.stop(t)
	files, names := store.Passed(t)
	restarted := time.Now()
	dst2 := l.startWith(t, dstNS, "connetd-dst2", pdir, env, files, "sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=$0 LISTEN_FDNAMES=$1 exec "$2" --config "$3"`,
		fmt.Sprint(len(files)), strings.Join(names, ":"), bin, filepath.Join(pdir, "dst.toml"))
	failed := 0
	for {
		if got, _, err := fetch(srcNS, "small.bin", 0, 5*time.Second); err == nil && got == sum {
			break
		}
		failed++
		if time.Since(restarted) > 15*time.Second {
			t.Fatalf("no connection through the source within 15s of the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(restarted)
	st, err = status(srcNS)
	if err != nil {
		t.Fatal(err)
	}
	pe := st.Sources[0].Peers[0]
	line := fmt.Sprintf("restart easy→easy: a new connection %s after the restart (exec), %d failed; path %s, punch attempts %d → %d",
		took.Round(time.Millisecond), failed, pe.Path, punches, pe.PunchAttempts)
	t.Log(line)
	fmt.Fprintln(os.Stdout, "NAT lab "+line)
	if took > time.Second {
		t.Errorf("a new connection %s after the restart, want within 1s", took)
	}
	if pe.Path != "direct" || pe.PunchAttempts != punches {
		t.Errorf("want direct without a new punch")
	}
	if !strings.Contains(dst2.output(), "fd_name=direct") {
		t.Errorf("the restarted destination did not take its direct socket from the store")
	}
}

// startWith starts a process in namespace ns, with extra environment and
// files passed as fds 3… (ip netns exec keeps them); its output goes to a
// file shown when the test fails.
func (l *lab) startWith(t *testing.T, ns, name, logDir string, env []string, files []*os.File, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(logDir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	p.cmd.Dir = logDir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.ExtraFiles = files
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	for _, f := range files {
		f.Close()
	}
	go func() { p.err = p.cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() || os.Getenv("NATLAB_LOGS") != "" {
			b, _ := os.ReadFile(p.log)
			if len(b) > 6000 && os.Getenv("NATLAB_LOGS") == "" {
				b = b[len(b)-6000:]
			}
			t.Logf("--- last output of %s ---\n%s", name, b)
		}
	})
	return p
}
