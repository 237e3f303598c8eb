package daemon

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/relay"
)

// oldStatusJSON is how the status used to be built, by a JSON round trip
// through a map: the typed Snapshot must serve the same document.
func oldStatusJSON(t *testing.T, roleStatus any, role, version string, bufs map[string]BufferSize) any {
	t.Helper()
	b, err := json.Marshal(roleStatus)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["role"], m["version"], m["udp_buffers"] = role, version, bufs
	return decode(t, m)
}

func decode(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSnapshotJSONKeepsTheStatusShape(t *testing.T) {
	cl := client.Status{ID: "c1", ServerAddr: "srv:19190", Control: "connected", NAT: "easy", Candidates: []string{},
		Sources: []client.EndpointStatus{{Name: "web", Addr: "127.0.0.1:8000", Route: "any", BytesIn: 5,
			Peers: []client.PeerStatus{{ID: "p1", Route: "any", Path: "direct", RTTMicro: 300, PunchAttempts: 1}}}},
		Destinations: []client.EndpointStatus{}, Relays: []client.RelayStatus{{ID: "r1", Addr: "relay:1", Connected: true}}}
	ctl := control.Status{Clients: []control.ClientStatus{{ID: "c1", Addr: "1.2.3.4:5", Endpoints: []string{"source:web"}}},
		Endpoints: []control.EndpointStatus{{Name: "web", Sources: 1}}, Relays: []control.RelayStatus{}}
	rel := relay.Status{ID: "r1", Clients: []relay.ClientStatus{}, Endpoints: []relay.EndpointStatus{{Name: "web", Bytes: 9}}, Packets: 3}
	bufs := map[string]BufferSize{"direct": {Receive: 14 << 20, Send: 14 << 20}}
	for _, tc := range []struct {
		role     string
		snap     Snapshot
		asBefore any
	}{
		{"client", Snapshot{Client: &cl}, cl},
		{"control", Snapshot{Control: &ctl}, ctl},
		{"relay", Snapshot{Relay: &rel}, rel},
		{"server", Snapshot{Control: &ctl, Relay: &rel}, struct {
			Control control.Status `json:"control"`
			Relay   relay.Status   `json:"relay"`
		}{ctl, rel}},
	} {
		tc.snap.Role, tc.snap.Version, tc.snap.UDPBuffers = tc.role, "v1.2", bufs
		got, want := decode(t, tc.snap), oldStatusJSON(t, tc.asBefore, tc.role, "v1.2", bufs)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", tc.role, got, want)
		}
	}
	// Without buffers to report, udp_buffers is still an object.
	if got := decode(t, Snapshot{Role: "relay", Relay: &rel}).(map[string]any)["udp_buffers"]; !reflect.DeepEqual(got, map[string]any{}) {
		t.Errorf("udp_buffers = %#v, want {}", got)
	}
}
