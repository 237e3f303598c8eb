package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/syncbuf"
	"github.com/connetd/connetd/internal/testenv"
)

// connetctl runs the CLI against the private bus, as root unless asUser.
func connetctl(t *testing.T, b *bus, asUser string, args ...string) (string, string, int) {
	t.Helper()
	argv := append([]string{filepath.Join(binDir, "connetctl")}, args...)
	if asUser != "" {
		argv = append([]string{"setpriv", "--reuid=" + asUser, "--regid=nogroup", "--clear-groups"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), b.env()...)
	var out, errOut syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run connetctl: %v", err)
	}
	return out.String(), errOut.String(), code
}

// dbusTopology is a server, destination and source, all on a private bus.
func dbusTopology(t *testing.T, b *bus) *topology {
	t.Helper()
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.env = b.env()
	tp.start(t)
	return tp
}

func TestConnetctlAddSourceStatusRemoveAndPersistence(t *testing.T) {
	b := startBus(t)
	tp := dbusTopology(t, b)
	port := freePort(t)
	if out, errOut, code := connetctl(t, b, "", "--instance", "dst", "add-destination", "second", addr(tp.echoPort)); code != 0 {
		t.Fatalf("add-destination: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := connetctl(t, b, "", "--instance", "src", "add-source", "second", addr(port), "--route", "direct"); code != 0 {
		t.Fatalf("add-source: exit %d\n%s%s", code, out, errOut)
	}
	waitPath(t, addr(tp.srcStatus), "second", "direct", 10*time.Second)
	if got, err := echoRoundTrip(addr(port), []byte("via connetctl")); err != nil || string(got) != "via connetctl" {
		t.Fatalf("echo through the source connetctl added: %q, %v", got, err)
	}
	out, errOut, code := connetctl(t, b, "", "--instance", "src", "status")
	if code != 0 || !strings.Contains(out, "second") || !strings.Contains(out, "direct") || !strings.Contains(out, "runtime") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = connetctl(t, b, "", "--instance", "src", "--json", "list")
	var rows []struct{ Name, Origin string }
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 2 {
		t.Fatalf("list --json: exit %d: %s", code, out)
	}

	// The change survives a restart; the file's source removed at run time
	// stays removed.
	if _, errOut, code := connetctl(t, b, "", "--instance", "src", "remove-source", "svc"); code != 0 {
		t.Fatalf("remove-source svc: exit %d %s", code, errOut)
	}
	tp.src.stop(t)
	tp.src = tp.connetd(t, "src", "--config", "src.toml") // same name: same state directory
	b.waitName(t, b.connect(t), "src")
	out, _, code = connetctl(t, b, "", "--instance", "src", "--json", "list")
	rows = nil
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil {
		t.Fatalf("list after restart: exit %d: %s", code, out)
	}
	if len(rows) != 1 || rows[0].Name != "second" || rows[0].Origin != "runtime" {
		t.Fatalf("after a restart: %+v, want only the run-time source", rows)
	}
	waitPath(t, addr(tp.srcStatus), "second", "direct", 10*time.Second)
	if got, err := echoRoundTrip(addr(port), []byte("after restart")); err != nil || string(got) != "after restart" {
		t.Fatalf("echo after restart: %q, %v", got, err)
	}
}

func TestConnetctlBadArgumentsGiveDocumentedErrorsAndChangeNothing(t *testing.T) {
	b := startBus(t)
	tp := dbusTopology(t, b)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"add-source", "x", "not-an-address"}, 1, "client.sources.x.addr"},
		{[]string{"add-source", "svc", addr(freePort(t))}, 1, "already exists"},
		{[]string{"add-source", "x", addr(freePort(t)), "--route", "sideways"}, 1, "is not one of any, direct, relay"},
		{[]string{"remove-source", "nope"}, 1, "not found"},
		{[]string{"remove-destination", "nope"}, 1, "not found"},
		{[]string{"clients"}, 1, "not available for this instance's role"},
	} {
		out, errOut, code := connetctl(t, b, "", append([]string{"--instance", "src"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("connetctl %v: exit %d, stderr %q; want exit %d mentioning %q (stdout %q)", tc.args, code, errOut, tc.code, tc.msg, out)
		}
	}
	out, _, _ := connetctl(t, b, "", "--instance", "src", "--json", "list")
	var rows []struct{ Name string }
	if json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 || rows[0].Name != "svc" {
		t.Fatalf("failed calls changed the endpoints: %s", out)
	}
	if _, errOut, code := connetctl(t, b, "", "--instance", "ghost", "status"); code != 3 || !strings.Contains(errOut, "systemctl start connetd@ghost") {
		t.Errorf("status of a missing instance: exit %d, %q", code, errOut)
	}
	_ = tp
}

func TestUnprivilegedCallerReadsButIsRefusedEveryChange(t *testing.T) {
	testenv.RequireRoot(t, "run connetctl as nobody")
	testenv.RequireTool(t, "setpriv", "util-linux")
	for _, tc := range []struct{ name, policy string }{
		{"bus policy", ""},
		{"connetd's own check", permissivePolicy},
	} {
		t.Run(tc.name, func(t *testing.T) { refusesUnprivileged(t, startBusWith(t, tc.policy)) })
	}
}

func refusesUnprivileged(t *testing.T, b *bus) {
	tp := dbusTopology(t, b)
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := connetctl(t, b, "nobody", "--instance", "src", "status"); code != 0 || !strings.Contains(out, "svc") {
		t.Fatalf("nobody reading status: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := connetctl(t, b, "nobody", "--instance", "server", "clients"); code != 0 || strings.Count(out, "\n") < 3 {
		t.Fatalf("nobody listing clients: exit %d\n%s%s", code, out, errOut)
	}
	for _, tc := range []struct {
		instance string
		args     []string
	}{
		{"src", []string{"add-source", "x", addr(freePort(t))}},
		{"src", []string{"remove-source", "svc"}},
		{"src", []string{"add-destination", "y", addr(freePort(t))}},
		{"dst", []string{"remove-destination", "svc"}},
		{"src", []string{"reload"}},
		{"server", []string{"tokens", "add", "intruder"}},
		{"server", []string{"tokens", "revoke", "client-s-token"}},
	} {
		_, errOut, code := connetctl(t, b, "nobody", append([]string{"--instance", tc.instance}, tc.args...)...)
		if code != 4 || !strings.Contains(errOut, "access denied") {
			t.Errorf("nobody: connetctl %v: exit %d, %q; want 4, access denied", tc.args, code, errOut)
		}
	}
	// Nothing changed: the source still carries traffic.
	if got, err := echoRoundTrip(tp.srcAddr("svc"), []byte("untouched")); err != nil || string(got) != "untouched" {
		t.Fatalf("echo after refused calls: %q, %v", got, err)
	}
}

func TestConnetctlTokensRevokeDisconnectsTheClient(t *testing.T) {
	b := startBus(t)
	tp := dbusTopology(t, b)
	if _, errOut, code := connetctl(t, b, "", "--instance", "server", "tokens", "revoke", "client-s-token"); code != 0 {
		t.Fatalf("tokens revoke: exit %d %s", code, errOut)
	}
	tp.src.waitLog(t, "control server refused this client; check the token", 10*time.Second)
	out, _, code := connetctl(t, b, "", "--instance", "server", "--json", "tokens")
	var counts struct{ Config, Runtime, Revoked int }
	if code != 0 || json.Unmarshal([]byte(out), &counts) != nil || counts.Config != 1 || counts.Revoked != 1 {
		t.Fatalf("tokens: exit %d %s", code, out)
	}
	if _, errOut, code := connetctl(t, b, "", "--instance", "server", "tokens", "add", "client-s-token"); code != 0 {
		t.Fatalf("tokens add: exit %d %s", code, errOut)
	}
	waitPath(t, addr(tp.srcStatus), "svc", "direct", 15*time.Second)
}
