package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// diagnoseJSON is the part of `connetctl --json diagnose` the test checks.
type diagnoseJSON struct {
	Healthy bool `json:"healthy"`
	Control struct {
		State    string `json:"state"`
		Observed string `json:"observed"`
		RTT      int64  `json:"rtt_us"`
	} `json:"control"`
	Peers []struct {
		Endpoint string `json:"endpoint"`
		Kind     string `json:"kind"`
		Path     string `json:"path"`
	} `json:"peers"`
	Problems []struct {
		Check  string `json:"check"`
		Detail string `json:"detail"`
	} `json:"problems"`
	ClockSkewMs *int64 `json:"clock_skew_ms"`
}

// runDiagnose runs diagnose --json until accept likes the result or the
// timeout passes; the last result is returned either way.
func runDiagnose(t *testing.T, b *bus, timeout time.Duration, accept func(diagnoseJSON, int) bool) (diagnoseJSON, string, int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, errOut, code := connetctl(t, b, "", "--instance", "src", "--json", "diagnose")
		var d diagnoseJSON
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("diagnose --json: exit %d, not JSON (%v):\n%s%s", code, err, out, errOut)
		}
		if accept(d, code) || time.Now().After(deadline) {
			return d, out + errOut, code
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestConnetctlDiagnoseHealthyThenControlUnreachable(t *testing.T) {
	b := startBus(t)
	tp := dbusTopology(t, b)
	waitPath(t, addr(tp.srcStatus), "svc", "direct", 15*time.Second)

	// The relay link comes up on its own time; diagnose is healthy once it
	// has. An unprivileged daemon cannot get QUIC's buffers, which diagnose
	// rightly reports: then that must be all it reports.
	healthy := func(d diagnoseJSON, code int) bool {
		if code == 0 && d.Healthy {
			return true
		}
		if os.Geteuid() == 0 || code != 1 || len(d.Problems) == 0 {
			return false
		}
		for _, p := range d.Problems {
			if p.Check != "udp-buffers" {
				return false
			}
		}
		return true
	}
	d, out, code := runDiagnose(t, b, 15*time.Second, healthy)
	if !healthy(d, code) {
		t.Fatalf("diagnose of a healthy topology: exit %d\n%s", code, out)
	}
	if d.Control.State != "connected" || d.Control.Observed == "" || d.Control.RTT <= 0 {
		t.Errorf("control: %+v, want connected with an observed address and an RTT\n%s", d.Control, out)
	}
	// Client and control share this host's clock: the estimate is off by
	// at most half the hello's round trip on loopback.
	if d.ClockSkewMs == nil || *d.ClockSkewMs < -1000 || *d.ClockSkewMs > 1000 {
		t.Errorf("clock_skew_ms %v, want present and within a second of 0\n%s", d.ClockSkewMs, out)
	}
	if len(d.Peers) != 1 || d.Peers[0].Endpoint != "svc" || d.Peers[0].Kind != "source" || d.Peers[0].Path != "direct" {
		t.Errorf("peers: %+v, want svc's one peer direct\n%s", d.Peers, out)
	}
	table, errOut, code := connetctl(t, b, "", "--instance", "src", "diagnose")
	if !strings.Contains(table, "direct") || os.Geteuid() == 0 && (code != 0 || !strings.Contains(table, "No problems found.")) {
		t.Errorf("diagnose table: exit %d\n%s%s", code, table, errOut)
	}

	t.Logf("healthy:\n%s", table)

	tp.server.stop(t)
	d, out, code = runDiagnose(t, b, 20*time.Second, func(d diagnoseJSON, code int) bool { return code == 1 })
	if code != 1 || d.Healthy || len(d.Problems) == 0 || d.Problems[0].Check != "control" {
		t.Fatalf("diagnose with the server stopped: exit %d, want 1 naming control first\n%s", code, out)
	}
	table, errOut, code = connetctl(t, b, "", "--instance", "src", "diagnose")
	t.Logf("server stopped:\n%s%s", table, errOut)
	if code != 1 || !strings.Contains(errOut, "control unreachable") || !strings.Contains(errOut, "check server-addr") {
		t.Errorf("diagnose's error with the server stopped: exit %d, stderr %q", code, errOut)
	}
}
