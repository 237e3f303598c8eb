package main

import (
	"os/exec"
	"strings"
	"testing"
)

// connetctl talks to the daemon over D-Bus only; linking the daemon's
// data plane would make a small CLI a large one and tie it to the daemon's
// internals. These modules mark that it happened.
var daemonOnly = []string{
	"github.com/quic-go/quic-go",
	"go.etcd.io/bbolt",
	"github.com/vishvananda/netlink",
	"github.com/huin/goupnp",
}

func TestConnetctlDoesNotLinkTheDaemon(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, mod := range daemonOnly {
			if pkg == mod || strings.HasPrefix(pkg, mod+"/") {
				t.Errorf("connetctl depends on %s (of %s); import dbusapi, not its service side", pkg, mod)
			}
		}
	}
}
