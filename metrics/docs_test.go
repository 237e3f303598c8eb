package metrics

import (
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/connetd/connetd/internal/testenv"
)

// The example in docs/examples/prometheus must load in Prometheus: the
// scrape config and the alert rules are checked, and the rules' own unit
// tests run.
func TestExamplePrometheusConfigAndRules(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool", "prometheus")
	dir := "../docs/examples/prometheus"
	for _, args := range [][]string{
		{"check", "rules", "connetd-alerts.yml"},
		{"check", "config", "prometheus.yml"},
		{"test", "rules", "connetd-alerts.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// The rules and docs name only metrics the collector has, so a rename
// cannot leave an alert that never fires.
func TestDocsNameExistingMetrics(t *testing.T) {
	known := map[string]bool{}
	for _, d := range connetdDescs() {
		known[d.name] = true
	}
	for _, f := range runtimeFamilies {
		known[f.desc.name] = true
	}
	for _, d := range append([]*desc{goInfo, goThreads, goGCPause, goLastGC}, processDescs...) {
		known[d.name] = true
	}
	for _, file := range []string{"../docs/examples/prometheus/connetd-alerts.yml", "../docs/metrics.md"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`\b(connetd|go|process)_[a-z_]+[a-z]`).FindAllString(string(b), -1) {
			if !known[name] {
				t.Errorf("%s names %s, which connetd does not export", file, name)
			}
		}
	}
}
