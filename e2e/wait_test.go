package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/syncbuf"
)

// connetctl wait, started before any daemon, returns as soon as the
// source's path is up: it waits for the instance to appear on the bus, then
// is woken by the endpoint's signals rather than by its 2 s poll.
func TestWaitReturnsPromptlyOnceTheSourceHasItsPath(t *testing.T) {
	b := startBus(t)
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.env = b.env()
	tp.startEcho(t)

	cmd := exec.Command(filepath.Join(binDir, "connetctl"), "--instance", "src", "wait", "svc", "--timeout", "10s")
	cmd.Env = append(os.Environ(), b.env()...)
	var out, errOut syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan time.Time, 1)
	var waitErr error
	go func() { waitErr = cmd.Wait(); exited <- time.Now() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	tp.startServer(t)
	tp.startClients(t)
	// When the path came up, as the source's status page shows it. wait
	// may see it over D-Bus between two looks at the page: then the path
	// must be there right after it exited.
	var up, done time.Time
	deadline := time.Now().Add(15 * time.Second)
	for up.IsZero() && done.IsZero() && time.Now().Before(deadline) {
		if sourcePath(addr(tp.srcStatus), "svc") == "direct" {
			up = time.Now()
			break
		}
		select {
		case done = <-exited:
			if sourcePath(addr(tp.srcStatus), "svc") != "direct" {
				t.Fatalf("wait exited (%v) %s after it started, before the path was up\nstdout %q\nstderr %q", waitErr, done.Sub(started), out.String(), errOut.String())
			}
			up = done
		case <-time.After(5 * time.Millisecond):
		}
	}
	if up.IsZero() {
		t.Fatal("the source never had a direct path")
	}
	if done.IsZero() {
		select {
		case done = <-exited:
		case <-time.After(10 * time.Second):
			t.Fatalf("wait still runs 10s after the path came up\nstderr %q", errOut.String())
		}
	}
	if waitErr != nil {
		t.Fatalf("wait: %v\nstdout %q\nstderr %q", waitErr, out.String(), errOut.String())
	}
	lag := done.Sub(up)
	t.Logf("wait ran %s, and returned %s after the status page showed the path (negative: before the page did)", done.Sub(started).Round(time.Millisecond), lag.Round(100*time.Microsecond))
	if lag >= time.Second {
		t.Errorf("wait returned %s after the path came up, want under 1s (by signal, not by its poll)", lag)
	}
	if out.String() != "" {
		t.Errorf("wait printed %q; it is silent without --json", out.String())
	}
	// Ready already: it returns at once, with --json saying which path.
	o, e, code := connetctl(t, b, "", "--instance", "src", "--json", "wait", "svc", "--path", "direct", "--timeout", "0")
	if code != 0 || !strings.Contains(o, `"path": "direct"`) || !strings.Contains(o, `"kind": "source"`) {
		t.Errorf("wait --json on a ready source: exit %d\n%s%s", code, o, e)
	}
}

// What wait says when it gives up: no such endpoint, no peer, only relay
// for --path direct, no instance.
func TestWaitTimesOutNamingWhatIsMissing(t *testing.T) {
	b := startBus(t)
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "relay", dstRoute: "any"})
	tp.env = b.env()
	tp.start(t)
	// A source no destination offers: it has no peer.
	if _, e, code := connetctl(t, b, "", "--instance", "src", "add-source", "lonely", addr(freePort(t))); code != 0 {
		t.Fatalf("add-source: exit %d %s", code, e)
	}
	if _, e, code := connetctl(t, b, "", "--instance", "src", "wait", "svc", "--timeout", "5s"); code != 0 {
		t.Errorf("wait svc (relayed, any path): exit %d %s", code, e)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--instance", "src", "wait", "nope", "--timeout", "1s"}, 1, "no such endpoint"},
		{[]string{"--instance", "src", "wait", "lonely", "--timeout", "1s"}, 1, "no peer"},
		{[]string{"--instance", "src", "wait", "svc", "--path", "direct", "--timeout", "1s"}, 1, "only relay"},
		{[]string{"--instance", "dst", "wait", "svc", "--path", "direct", "--timeout", "1s"}, 1, "only relay: destination"},
		{[]string{"--instance", "ghost", "wait", "svc", "--timeout", "500ms"}, 3, "connetd@ghost is not running"},
		{[]string{"--instance", "server", "wait", "svc", "--timeout", "1s"}, 1, "not available for this instance's role"},
	} {
		start := time.Now()
		_, e, code := connetctl(t, b, "", tc.args...)
		took := time.Since(start)
		t.Logf("connetctl %s: exit %d after %s: %s", strings.Join(tc.args, " "), code, took.Round(time.Millisecond), strings.TrimSpace(e))
		if code != tc.code || !strings.Contains(e, tc.msg) {
			t.Errorf("connetctl %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, e, tc.code, tc.msg)
		}
		if took > 5*time.Second {
			t.Errorf("connetctl %v took %s", tc.args, took)
		}
	}
}

// An endpoint that does not exist yet is waited for: added while wait
// runs, it ends the wait.
func TestWaitWaitsForAnEndpointAddedLater(t *testing.T) {
	b := startBus(t)
	tp := dbusTopology(t, b)
	cmd := exec.Command(filepath.Join(binDir, "connetctl"), "--instance", "src", "wait", "second", "--timeout", "10s")
	cmd.Env = append(os.Environ(), b.env()...)
	var errOut syncbuf.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	select {
	case err := <-done:
		t.Fatalf("wait for a missing endpoint returned at once: %v %s", err, errOut.String())
	case <-time.After(300 * time.Millisecond):
	}
	if _, e, code := connetctl(t, b, "", "--instance", "dst", "add-destination", "second", addr(tp.echoPort)); code != 0 {
		t.Fatalf("add-destination: exit %d %s", code, e)
	}
	if _, e, code := connetctl(t, b, "", "--instance", "src", "add-source", "second", addr(freePort(t))); code != 0 {
		t.Fatalf("add-source: exit %d %s", code, e)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("wait: %v %s", err, errOut.String())
		}
	case <-time.After(12 * time.Second):
		t.Fatalf("wait did not return once the endpoint was added: %s", errOut.String())
	}
}
