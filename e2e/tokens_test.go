package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/syncbuf"
)

// connetctlStdin runs connetctl with stdin as its standard input. While it
// waits for that input it reads the process's command line as any user of
// the machine could (/proc/PID/cmdline), and returns it with NULs as spaces.
func connetctlStdin(t *testing.T, b *bus, stdin string, args ...string) (cmdline, stdout, stderr string, code int) {
	t.Helper()
	bin := filepath.Join(binDir, "connetctl")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), b.env()...)
	var out, errOut syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Until exec, /proc/PID/cmdline is the test binary's.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
		if err == nil && strings.HasPrefix(string(raw), bin+"\x00") {
			cmdline = strings.ReplaceAll(strings.TrimSuffix(string(raw), "\x00"), "\x00", " ")
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("connetctl's command line never showed: %q, %v", raw, err)
		}
	}
	if _, err := in.Write([]byte(stdin)); err != nil {
		t.Fatal(err)
	}
	in.Close()
	err = cmd.Wait()
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run connetctl: %v", err)
	}
	return cmdline, out.String(), errOut.String(), code
}

func tokenCounts(t *testing.T, b *bus) (config, runtime, revoked int) {
	t.Helper()
	out, errOut, code := connetctl(t, b, "", "--instance", "server", "--json", "tokens")
	var c struct{ Config, Runtime, Revoked int }
	if code != 0 || json.Unmarshal([]byte(out), &c) != nil {
		t.Fatalf("tokens: exit %d %s%s", code, out, errOut)
	}
	return c.Config, c.Runtime, c.Revoked
}

// A token given to connetctl on standard input or in a file takes effect
// (a client holding it is accepted) and is never in connetctl's command
// line, which every user of the machine can read.
func TestConnetctlTokensFromStdinOrFileTakeEffectAndStayOutOfArgv(t *testing.T) {
	b := startBus(t)
	tp := dbusTopology(t, b)

	// Revoke the source's token, typed on standard input: the source is
	// refused, so that adding the token back shows in it being accepted.
	cmdline, out, errOut, code := connetctlStdin(t, b, "client-s-token\n", "--instance", "server", "tokens", "revoke", "-")
	if code != 0 {
		t.Fatalf("tokens revoke -: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(cmdline, "client-s-token") || !strings.HasSuffix(cmdline, " tokens revoke -") {
		t.Fatalf("connetctl's command line %q: want the arguments, without the token", cmdline)
	}
	tp.src.waitLog(t, "control server refused this client; check the token", 10*time.Second)
	if _, _, revoked := tokenCounts(t, b); revoked != 1 {
		t.Fatalf("%d tokens revoked, want 1", revoked)
	}

	cmdline, out, errOut, code = connetctlStdin(t, b, "# the source again\nclient-s-token\n", "--instance", "server", "tokens", "add", "-")
	if code != 0 || strings.Contains(errOut, "warning") {
		t.Fatalf("tokens add -: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(cmdline, "client-s-token") || !strings.HasSuffix(cmdline, " tokens add -") {
		t.Fatalf("connetctl's command line %q: want the arguments, without the token", cmdline)
	}
	waitPath(t, addr(tp.srcStatus), "svc", "direct", 15*time.Second)
	if _, _, revoked := tokenCounts(t, b); revoked != 0 {
		t.Fatalf("%d tokens revoked after adding it back, want 0", revoked)
	}

	// A new token from a file; a new client holding it is accepted and
	// reaches the service.
	writeFile(t, tp.dir, "fresh.token", "fresh-token\n")
	cmdline, out, errOut, code = connetctlStdin(t, b, "", "--instance", "server", "tokens", "add", "--file", filepath.Join(tp.dir, "fresh.token"))
	if code != 0 || strings.Contains(errOut, "warning") {
		t.Fatalf("tokens add --file: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(cmdline, "fresh-token") {
		t.Fatalf("connetctl's command line %q holds the token", cmdline)
	}
	if _, runtime, _ := tokenCounts(t, b); runtime != 1 {
		t.Fatalf("%d tokens added at run time, want 1", runtime)
	}
	port, status := freePort(t), freePort(t)
	tp.connetd(t, "fresh", "client", "--token-file", "fresh.token", "--server-addr", addr(tp.serverPort),
		"--server-cas", "cert.pem", "--direct-addr", addr(freePort(t)), "--status-addr", addr(status),
		"--src-name", "svc", "--src-addr", addr(port))
	waitPath(t, addr(status), "svc", "direct", 15*time.Second)
	if got, err := echoRoundTrip(addr(port), []byte("fresh token")); err != nil || string(got) != "fresh token" {
		t.Fatalf("echo through the client with the added token: %q, %v", got, err)
	}

	// The old form still works, with a warning that names the way out.
	_, errOut, code = connetctl(t, b, "", "--instance", "server", "tokens", "add", "on-the-command-line")
	if code != 0 || !strings.Contains(errOut, "readable by every user") || !strings.Contains(errOut, "tokens add -") {
		t.Fatalf("tokens add TOKEN: exit %d, stderr %q; want success with a warning", code, errOut)
	}
	if _, runtime, _ := tokenCounts(t, b); runtime != 2 {
		t.Fatalf("%d tokens added at run time, want 2", runtime)
	}
}
