package units

import (
	"os/exec"
	"testing"

	"github.com/connetd/connetd/internal/testenv"
)

// The polkit rule grants user connetd start and stop of
// connetd-ondemand-*.service and nothing else; checked with node (a
// JavaScript engine like polkit's own).
func TestPolkitRuleGrantsOnlyOnDemandUnits(t *testing.T) {
	node := testenv.RequireTool(t, "node", "nodejs")
	out, err := exec.Command(node, "testdata/polkit-rule-check.js", "connetd-ondemand.rules").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
