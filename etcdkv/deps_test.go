package etcdkv

import (
	"os/exec"
	"strings"
	"testing"
)

// The point of this package is to be cheap to link (see the package
// comment): it must stay on the standard library.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg != "github.com/connetd/connetd/etcdkv" {
			t.Errorf("etcdkv depends on %s; it must use only the standard library", pkg)
		}
	}
}
