// Package testbin builds the project's commands once for tests that run
// them as separate processes (e2e, natlab). They are built without -race:
// those tests measure the daemons, and the race detector caps a process at
// 8128 goroutines, below what ten thousand open connections need.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Build compiles pkgs (paths relative to the module root, which is root)
// into a new temporary directory and returns it; the caller removes it.
func Build(root string, pkgs ...string) (string, error) {
	dir, err := os.MkdirTemp("", "connetd-test-bin-")
	if err != nil {
		return "", err
	}
	for _, pkg := range pkgs {
		cmd := exec.Command("go", "build", "-o", dir, pkg)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("build %s: %w\n%s", pkg, err, strings.TrimSpace(string(out)))
		}
	}
	return dir, nil
}
