// Package testbus starts a private dbus-daemon for tests, configured as a
// system bus: by default no one owns names or calls methods, and the
// project's real policy file (units/org.connetd.Connetd1.conf) opens what
// connetd allows, so the shipped policy is what the tests exercise.
package testbus

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connetd/connetd/internal/syncbuf"
	"github.com/connetd/connetd/internal/testenv"
)

// Permissive lets everyone do everything: what is left to refuse a caller
// is connetd's own check.
const Permissive = `<policy context="default"><allow own="*"/><allow send_type="method_call"/></policy>`

// config is like Debian's system.conf, with the policy file included.
const config = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>%s</include>
  %s
</busconfig>
`

// Start runs a dbus-daemon until the test ends and returns its address.
// root is the module's root directory, relative to the test's package;
// extraPolicy is added after the project's policy. Without dbus-daemon the
// test is skipped (under CI it fails: see package testenv).
func Start(t testing.TB, root, extraPolicy string) string {
	t.Helper()
	testenv.RequireTool(t, "dbus-daemon", "dbus")
	policy, err := filepath.Abs(filepath.Join(root, "units", "org.connetd.Connetd1.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Tests call as nobody too: they need to reach the socket.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, config, dir, policy, extraPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("--- dbus-daemon ---\n%s", stderr.String())
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(line)
}
