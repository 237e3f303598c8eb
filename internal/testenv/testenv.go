// Package testenv decides what a test does when this machine lacks
// something it needs: root, a tool, a kernel feature. Outside CI it skips,
// saying what is missing, so that a developer's machine runs what it can.
// Under CI (the environment variable CI set, as CI services and .ci/run
// set it) it fails: CI machines are set up to have all of it
// (scripts/deps.sh), and a skip there would report a test that never ran
// as passed.
//
// Skips that are not about the machine (-short mode, say) stay plain
// t.Skip calls.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI.
func InCI() bool { return os.Getenv("CI") != "" }

// Missing ends the test for want of something the machine lacks: a skip
// saying why outside CI, a failure under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s; CI is set, so this fails instead of skipping", why)
	}
	t.Skip(why)
}

// RequireRoot needs the test to run as root; why says what for, as in
// "needs root to " + why.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root to %s", why)
	}
}

// RequireTool needs the command name on PATH and returns its path;
// debPackage is the Debian package that has it.
func RequireTool(t testing.TB, name, debPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not installed (Debian package %s; scripts/deps.sh installs it)", name, debPackage)
	}
	return path
}
