package units

import (
	"os/exec"
	"testing"
)

// The polkit rule grants user connetd start and stop of
// connetd-ondemand-*.service and nothing else; checked with node (a
// JavaScript engine like polkit's own) when it is installed.
func TestPolkitRuleGrantsOnlyOnDemandUnits(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed:", err)
	}
	out, err := exec.Command(node, "testdata/polkit-rule-check.js", "connetd-ondemand.rules").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
