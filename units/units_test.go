// Package units holds connetd's systemd unit files, sysusers.d and sysctl.d
// drop-ins; its tests check them with systemd's own tools.
package units

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/connetd/connetd/internal/testenv"
)

func need(t *testing.T, tool string) {
	t.Helper()
	testenv.RequireTool(t, tool, "systemd")
}

// stage copies the units into a temporary directory with ExecStart pointing
// at a freshly built connetd or connetctl (verify checks that the binary
// exists); that path is the only change.
func stage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "connetd")
	ctl := filepath.Join(dir, "connetctl")
	for out, pkg := range map[string]string{bin: "../cmd/connetd", ctl: "../cmd/connetctl"} {
		build := exec.Command("go", "build", "-o", out, pkg)
		if msg, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, msg)
		}
	}
	units, _ := filepath.Glob("*.service")
	sockets, _ := filepath.Glob("*.socket")
	for _, u := range append(units, sockets...) {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("/usr/bin/connetd"), []byte(bin))
		b = bytes.ReplaceAll(b, []byte("/usr/bin/connetctl"), []byte(ctl))
		if err := os.WriteFile(filepath.Join(dir, u), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestUnitsAndInstancesVerifyWithoutWarnings(t *testing.T) {
	need(t, "systemd-analyze")
	dir := stage(t)
	for _, unit := range []string{
		"connetd@client.service", "connetd@server.service", "connetd@src.service",
		"connetd-server-control.socket", "connetd-server-relay.socket", "connetd-client-direct.socket",
		// connetd-wait@client:svc.service; verify cannot take a ":" in a
		// path, and the escaped name expands %I to the same "client:svc".
		`connetd-wait@client\x3asvc.service`, `connetd-wait@client\x3aweb\x2fapi.service`,
	} {
		cmd := exec.Command("systemd-analyze", "verify", "--man=no", filepath.Join(dir, unit))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		// verify exits 0 on "Unknown key … ignoring": any output is a failure.
		if err != nil || stderr.Len() > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, stderr.String())
		}
	}
}

func TestClientInstanceExposureAtMost2(t *testing.T) {
	need(t, "systemd-analyze")
	dir := stage(t)
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", filepath.Join(dir, "connetd@client.service")).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for connetd@client\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	level, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security: connetd@client.service exposure %.1f", level)
	if level > 2.0 {
		t.Errorf("exposure %.1f, want at most 2.0:\n%s", level, out)
	}
}

func TestSysusersCreatesTheServiceUser(t *testing.T) {
	need(t, "systemd-sysusers")
	conf, err := filepath.Abs("connetd.sysusers") // --root would resolve a relative path inside the root
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-sysusers", "--dry-run", "--root="+t.TempDir(), conf).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Creating user 'connetd'") {
		t.Fatalf("sysusers would not create the connetd user:\n%s", out)
	}
}

func TestSysctlDropInRaisesBuffersToWhatQUICWants(t *testing.T) {
	b, err := os.ReadFile("connetd.sysctl")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"net.core.rmem_max", "net.core.wmem_max"} {
		m := regexp.MustCompile(regexp.QuoteMeta(key) + `\s*=\s*(\d+)`).FindSubmatch(b)
		if m == nil {
			t.Errorf("%s not set", key)
			continue
		}
		if v, _ := strconv.Atoi(string(m[1])); v < 7<<20 {
			t.Errorf("%s = %d, below the 7 MiB quic-go asks for", key, v)
		}
	}
}
