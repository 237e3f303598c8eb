package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckBinary runs connetd check as a binary: exit 0 for a usable
// configuration (warnings printed), 2 with every problem as FILE:LINE: KEY.
func TestCheckBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "connetd")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	files := map[string]string{
		"cert.pem": "x", "key.pem": "x",
		"ok.toml": "[server]\ncert-file = \"cert.pem\"\nkey-file = \"key.pem\"\ntokens = [\"a\"]\n",
		"bad.toml": "[server]\ntokens = [\"a\"]\n[[server.ingress]]\naddr = \":1\"\ncert-file = \"cert.pem\"\nkey-file = \"key.pem\"\n" +
			"[[server.ingress]]\naddr = \":2\"\n[server.ip-restriction]\nallow-cidrs = [\"nope\"]\n",
		"over.toml":  "[server]\nstatus-addr = \"bad\"\n",
		"typo.toml":  "[server]\ntokns = [\"a\"]\n",
		"c015.toml":  "[client]\ntoken = \"t\"\nnat-pmp = \"dial\"\nrelay-encryptions = [\"tls\"]\n",
		"ctl15.toml": "[control]\nclients-tokens-file = \"tokens\"\n[[control.clients-ingress]]\ncert-file = \"cert.pem\"\nkey-file = \"key.pem\"\nallow-cidrs = [\"10.0.0.0/8\"]\n",
		"tokens":     "a\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tokens"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		cmd := exec.Command(bin, append([]string{"check"}, args...)...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String()
	}
	for _, c := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"--config", "ok.toml"}, 0, []string{
			"warning: ok.toml:4: server.tokens: tokens are written inline and clients are accepted from any address",
			"connetd check: ok.toml: ok (1 warning)"}},
		{[]string{"c015.toml"}, 0, []string{"connetd check: c015.toml: ok"}},
		{[]string{"--config", "ctl15.toml"}, 0, []string{"warning: ctl15.toml:2: control.clients-tokens-file: tokens is readable by every user"}},
		{[]string{"--config", "bad.toml"}, 2, []string{
			"error: bad.toml:7: server.ingress[1]: connetd listens for clients on one address only, and cannot honour 2 ingresses",
			"error: bad.toml:10: server.ip-restriction.allow-cidrs:",
			"connetd check: bad.toml: 2 problems"}},
		{[]string{"--config", "ok.toml", "--config", "over.toml"}, 2, []string{
			"error: over.toml:2: server.status-addr: \"bad\" is not a host:port address"}},
		{[]string{"--config", "ok.toml", "typo.toml"}, 2, []string{"error: typo.toml:2: server.tokns: unknown key"}},
		{[]string{"--config", "missing.toml"}, 2, []string{"error: missing.toml: no such file or directory"}},
		{nil, 2, []string{"no configuration file given"}},
	} {
		code, out := run(c.args...)
		if code != c.code {
			t.Errorf("connetd check %s: exit %d, want %d\n%s", strings.Join(c.args, " "), code, c.code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("connetd check %s: output lacks %q:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
	}
}
