package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connetd/connetd/dbusapi"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got ---\n%s--- want ---\n%s", name, got, want)
	}
}

var clientView = statusView{
	Instance: "src", Role: "client", State: "running",
	Summary: "2 sources, 1 destination; control connected; 1 peer direct, 1 relayed", NAT: "easy", ControlAddr: "192.0.2.10:19190", ControlNode: "ctl-1",
	FlowMoves: map[string]uint64{"relay→direct": 3, "direct→relay": 1}, FlowMoveStallMaxMS: 870,
	Endpoints: []endpointRow{
		{Kind: "source", Name: "web", Address: "127.0.0.1:8000", Route: "any", Origin: "config", State: "active",
			BytesIn: 1536, BytesOut: 300, Peers: []dbusapi.PeerInfo{
				{ID: "6e27eab7cdc95e9b428da3acf2d56a7c", Route: "any", Path: "direct", Remote: "192.0.2.7:19192", RTTMicros: 312, BytesIn: 1536, BytesOut: 300, NAT: "hard", PunchAttempts: 2, PairsTried: 571},
				{ID: "85b1776a00000000000000000000000a", Route: "relay", Path: "relay", Remote: "85b1776a@198.51.100.1:19191", RTTMicros: 2450, BytesIn: 0, BytesOut: 0, NAT: "unknown"},
			}},
		{Kind: "source", Name: "db", Address: "127.0.0.1:5432", Route: "direct", Origin: "runtime", State: "active", Peers: []dbusapi.PeerInfo{}},
		{Kind: "destination", Name: "files", Address: "127.0.0.1:3000", Route: "any", Origin: "config", State: "active",
			BytesIn: 5 << 20, BytesOut: 3 << 30, Peers: []dbusapi.PeerInfo{}},
	},
}

var serverView = statusView{
	Instance: "server", Role: "server", State: "running", Summary: "2 clients, 1 endpoint, 1 relay; relay: 2 clients, 1 endpoint",
	Clients: []dbusapi.ClientInfo{
		{ID: "6e27eab7cdc95e9b428da3acf2d56a7c", Address: "192.0.2.7:19192", Endpoints: []string{"destination:web"}},
		{ID: "85b1776a00000000000000000000000a", Address: "198.51.100.9:40000", Endpoints: []string{"source:web"}},
	},
	ControlEndpoints: []dbusapi.ControlEndpoint{{Name: "web", Sources: 1, Destinations: 1}},
	Relays:           []dbusapi.RelayInfo{{ID: "cf77bcc65bb93f5f67106e3b32011444", Address: "relay.example:19191"}},
	RelayEndpoints:   []dbusapi.RelayEndpoint{{Name: "web", Sources: 1, Destinations: 1, Bytes: 123456}},
}

func TestStatusTableForAClient(t *testing.T) {
	golden(t, "status-client.golden", formatStatus(clientView))
}

func TestStatusTableForAServer(t *testing.T) {
	golden(t, "status-server.golden", formatStatus(serverView))
}

func TestStatusJSONForAClient(t *testing.T) {
	var b bytes.Buffer
	e := &env{stdout: &b}
	if err := e.printJSON(clientView); err != nil {
		t.Fatal(err)
	}
	golden(t, "status-client.json.golden", b.String())
	var back statusView
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back.Endpoints) != 3 || back.Endpoints[0].Peers[1].Path != "relay" {
		t.Fatalf("JSON does not round-trip: %v", err)
	}
}

func TestListAndPeersTables(t *testing.T) {
	golden(t, "list.golden", formatList(clientView.Endpoints))
	golden(t, "peers.golden", formatPeers(clientView.Endpoints))
}

func TestUsageErrorsExitWith2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"add-source", "only-a-name"},
		{"add-source", "a", ":1", "--colour", "red"},
		{"remove-source"},
		{"--instance"},
		{"tokens", "shred", "x"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, nil, &out, &errOut); code != exitUsage {
			t.Errorf("connetctl %q: exit %d, want %d (stderr %q)", args, code, exitUsage, errOut.String())
		}
	}
}

func TestNoBusExitsWith3AndSaysWhatToDo(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/connetctl-test")
	var out, errOut bytes.Buffer
	if code := run([]string{"status"}, nil, &out, &errOut); code != exitNotRunning {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitNotRunning, errOut.String())
	}
	if !strings.Contains(errOut.String(), "system bus") {
		t.Errorf("stderr %q does not say the bus is unreachable", errOut.String())
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands {
		var out, errOut bytes.Buffer
		if code := run([]string{c.name, "--help"}, nil, &out, &errOut); code != exitOK || !strings.Contains(out.String(), c.name) {
			t.Errorf("connetctl %s --help: exit %d, output %q", c.name, code, out.String())
		}
	}
}
