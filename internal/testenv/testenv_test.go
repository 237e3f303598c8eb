package testenv_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/connetd/connetd/internal/testenv"
)

// childEnv names the tool the child test requires; only a child started by
// TestMissingSkipsOutsideCIAndFailsUnderCI has it.
const childEnv = "CONNETD_TESTENV_CHILD_TOOL"

// TestChild is the test the parent runs in a child process: it requires
// the tool the parent names, then passes.
func TestChild(t *testing.T) {
	tool := os.Getenv(childEnv)
	if tool == "" {
		return // not a child: nothing to do
	}
	path := testenv.RequireTool(t, tool, "some-package")
	t.Logf("found %s", path)
}

// runChild runs TestChild in a child process with CI set to ci and
// returns its output and whether it exited 0.
func runChild(t *testing.T, tool, ci string) (string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.v", "-test.count=1")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CI=") && !strings.HasPrefix(kv, childEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, childEnv+"="+tool, "CI="+ci)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run the child test: %v", err)
	}
	return string(out), err == nil
}

func TestMissingSkipsOutsideCIAndFailsUnderCI(t *testing.T) {
	const absent = "connetd-testenv-no-such-tool"
	for _, tc := range []struct {
		name, tool, ci string
		wantOK         bool
		want           string
	}{
		{"absent tool outside CI", absent, "", true, "--- SKIP: TestChild"},
		{"absent tool under CI", absent, "true", false, "--- FAIL: TestChild"},
		{"present tool under CI", "sh", "true", true, "--- PASS: TestChild"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := runChild(t, tc.tool, tc.ci)
			if ok != tc.wantOK || !strings.Contains(out, tc.want) {
				t.Fatalf("child exited ok=%v, want %v, with %q in:\n%s", ok, tc.wantOK, tc.want, out)
			}
			if tc.tool == absent && !strings.Contains(out, absent+" not installed (Debian package some-package") {
				t.Errorf("child does not say what is missing:\n%s", out)
			}
		})
	}
}
