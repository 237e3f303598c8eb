package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/testfdstore"
)

// punchAttempts reads the first peer's punch counter of source name.
func punchAttempts(t *testing.T, statusAddr, name string) (int, string) {
	t.Helper()
	var st struct {
		Sources []struct {
			Name  string `json:"name"`
			Peers []struct {
				Path          string `json:"path"`
				PunchAttempts int    `json:"punch_attempts"`
			} `json:"peers"`
		} `json:"sources"`
	}
	if err := getJSON(statusAddr, &st); err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Sources {
		if s.Name == name && len(s.Peers) > 0 {
			return s.Peers[0].PunchAttempts, s.Peers[0].Path
		}
	}
	t.Fatalf("source %s has no peer: %+v", name, st)
	return 0, ""
}

// The destination restarts as systemd restarts a unit with
// FileDescriptorStoreMax=: its sockets go to the store and come back as
// LISTEN_FDS, its identity stays in its state directory. A new connection
// through the source works within a second, over the direct path, and the
// source punched nothing new.
//
// Stopped with SIGTERM, the old process closes its connections; killed
// with SIGKILL (a crash, Restart=on-failure), the new process answers the
// source's packets for the old connection with a stateless reset (same
// key, from the state directory). Either ends the source's connection at
// once and makes it re-dial.
func TestRestartedDestinationTakesBackItsSocketsAndIsDirectAtOnce(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) { restartDestination(t, sig) })
	}
}

func restartDestination(t *testing.T, sig syscall.Signal) {
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "direct", dstRoute: "any"})
	tp.startEcho(t)
	tp.startServer(t)
	store := testfdstore.New(t)
	stateEnv := "STATE_DIRECTORY=" + filepath.Join(tp.dir, "state-dst")
	cmd := exec.Command(filepath.Join(binDir, "connetd"), "--config", "dst.toml")
	cmd.Dir = tp.dir
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+store.Path(), stateEnv)
	dst := startCmd(t, "dst", cmd)
	tp.src = tp.connetd(t, "src", "--config", "src.toml")
	waitPath(t, addr(tp.srcStatus), "svc", "direct", 15*time.Second)
	if got, err := echoRoundTrip(tp.srcAddr("svc"), []byte("before")); err != nil || string(got) != "before" {
		t.Fatalf("echo before the restart: %q, %v", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(store.Names()) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := strings.Join(store.Names(), ","); got != "direct,client-relay,status" {
		t.Fatalf("stored sockets %q, want direct,client-relay,status", got)
	}
	punches, _ := punchAttempts(t, addr(tp.srcStatus), "svc")

	if sig == syscall.SIGTERM {
		dst.stop(t)
	} else {
		_ = dst.cmd.Process.Signal(sig)
		<-dst.done
	}
	files, names := store.Passed(t)
	restarted := time.Now()
	dst2 := activated(t, tp.dir, "dst2", files, names, []string{"NOTIFY_SOCKET=" + store.Path(), stateEnv}, "--config", "dst.toml")
	failed := 0
	for {
		if got, err := echoRoundTrip(tp.srcAddr("svc"), []byte("after")); err == nil && string(got) == "after" {
			break
		}
		failed++
		if time.Since(restarted) > 10*time.Second {
			t.Fatalf("no connection through the source within 10s of the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(restarted)
	t.Logf("%s, restart (exec) to a new connection over the direct path: %s (%d attempts failed)", sig, took, failed)
	if took > time.Second {
		t.Errorf("a new connection %s after the restart, want within 1s", took)
	}
	if n, path := punchAttempts(t, addr(tp.srcStatus), "svc"); n != punches || path != "direct" {
		t.Errorf("after the restart: path %q, punch attempts %d → %d; want direct without a new punch", path, punches, n)
	}
	if !strings.Contains(tp.src.out.String(), "direct path back at its last address, without punching") {
		t.Errorf("the source did not log the re-dial")
	}
	if sig == syscall.SIGKILL && !strings.Contains(tp.src.out.String(), "received a stateless reset") {
		t.Errorf("the source's connection did not end with a stateless reset")
	}
	for _, name := range []string{"direct", "client-relay", "status"} {
		if !strings.Contains(dst2.out.String(), "fd_name="+name) {
			t.Errorf("the restarted destination did not take its %s socket from the store", name)
		}
	}
	if strings.Contains(dst2.out.String(), "match no configured listener") {
		t.Errorf("the restarted destination left a stored socket unused")
	}
}
