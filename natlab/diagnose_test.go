package natlab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/syncbuf"
	"github.com/connetd/connetd/internal/testbus"
)

// labDiagnosis is the part of `connetctl --json diagnose` this test reads.
type labDiagnosis struct {
	Host struct {
		NAT      string `json:"nat"`
		NATBasis string `json:"nat_basis"`
	} `json:"host"`
	Peers []struct {
		Path    string `json:"path"`
		Reason  string `json:"reason"`
		PeerNAT string `json:"peer_nat"`
	} `json:"peers"`
	Problems []struct {
		Check  string `json:"check"`
		Detail string `json:"detail"`
		Advice string `json:"advice"`
	} `json:"problems"`
}

// TestDiagnoseNATKinds runs clients behind an easy NAT and behind two hard
// NATs, each registered on one private bus, and asks connetctl diagnose
// about them: the NAT kinds must be the lab's, and the hard↔hard pair,
// which can only be relayed, must be named with its reason.
func TestDiagnoseNATKinds(t *testing.T) {
	needRoot(t)
	busAddr := testbus.Start(t, "..", "")
	l, dir := labWithServer(t, "")

	// Each client is an instance named after its site, on the one bus.
	client := func(site, endpoint string) {
		write(t, dir, site+".toml", fmt.Sprintf(`[client]
token = "tok"
server-addr = "%s:19190"
server-cas = %q
status-addr = "127.0.0.1:19182"
%s`, serverAddr, filepath.Join(dir, "cert.pem"), endpoint))
		l.start(t, l.sites[site].clients[0], "connetd-"+site, dir, "env",
			"DBUS_SYSTEM_BUS_ADDRESS="+busAddr, "STATE_DIRECTORY="+filepath.Join(dir, "state-"+site),
			filepath.Join(binDir, "connetd"), "--config", filepath.Join(dir, site+".toml"))
	}
	client("hard1", fmt.Sprintf("[client.destinations.lab]\naddr = \"127.0.0.1:3000\"\nfile-server-root = %q\n", dir))
	client("hard2", "[client.sources.lab]\naddr = \"127.0.0.1:8000\"\n")
	client("easy1", "")

	easy := waitDiagnosis(t, busAddr, "easy1", func(d labDiagnosis, _ int) bool { return d.Host.NAT == "easy" })
	if easy.Host.NAT != "easy" || !strings.Contains(easy.Host.NATBasis, "observed the same address") {
		t.Errorf("behind the easy NAT: nat %q (%s), want easy decided by control and a relay agreeing", easy.Host.NAT, easy.Host.NATBasis)
	}
	hard := waitDiagnosis(t, busAddr, "hard2", func(d labDiagnosis, code int) bool {
		return code == 1 && len(d.Peers) == 1 && d.Peers[0].Path == "relay" && d.Peers[0].PeerNAT == "hard"
	})
	if hard.Host.NAT != "hard" || !strings.Contains(hard.Host.NATBasis, "relay") {
		t.Errorf("behind the hard NAT: nat %q (%s), want hard", hard.Host.NAT, hard.Host.NATBasis)
	}
	if len(hard.Peers) != 1 || hard.Peers[0].Path != "relay" || !strings.HasPrefix(hard.Peers[0].Reason, "both sides hard NAT") {
		t.Fatalf("hard↔hard peer: %+v, want relayed because both sides are hard", hard.Peers)
	}
	if len(hard.Problems) == 0 || !strings.Contains(hard.Problems[0].Detail, "relayed: both sides hard NAT") ||
		!strings.Contains(hard.Problems[0].Advice, "enable port mapping") {
		t.Errorf("hard↔hard: first problem %+v, want the relayed peer and port mapping advice", hard.Problems)
	}
	out, errOut, code := labConnetctl(t, busAddr, "--instance", "hard2", "diagnose")
	t.Logf("hard2:\n%s%s", out, errOut)
	if code != 1 || !strings.Contains(errOut, "both sides hard NAT") {
		t.Errorf("hard2 diagnose: exit %d, stderr %q; want 1 naming both sides hard NAT", code, errOut)
	}
}

// waitDiagnosis runs diagnose --json on instance until accept likes it or
// 30 s pass (hole punching gives up well within that), and returns the last.
func waitDiagnosis(t *testing.T, busAddr, instance string, accept func(labDiagnosis, int) bool) labDiagnosis {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, errOut, code := labConnetctl(t, busAddr, "--instance", instance, "--json", "diagnose")
		var d labDiagnosis
		err := json.Unmarshal([]byte(out), &d)
		if err == nil && accept(d, code) {
			return d
		}
		if time.Now().After(deadline) {
			t.Logf("%s: last diagnose: exit %d\n%s%s", instance, code, out, errOut)
			return d
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// labConnetctl runs connetctl outside the namespaces: the bus is a unix
// socket on the file system, which every namespace reaches.
func labConnetctl(t *testing.T, busAddr string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "connetctl"), args...)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+busAddr)
	var out, errOut syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("run connetctl: %v", err)
	}
	return out.String(), errOut.String(), 0
}
