package main

import (
	"encoding/json"

	"github.com/connetd/connetd/dbusapi"
)

// diagStatus is the part of GetStatus's JSON that diagnose reads. connetctl
// does not link the daemon (see deps_test.go), so it mirrors the fields it
// needs instead of importing client.Status; unknown fields are ignored, so
// the daemon can add more without breaking it.
type diagStatus struct {
	Role         string                    `json:"role"`
	ServerAddr   string                    `json:"server_addr"`
	Control      string                    `json:"control"`
	Observed     string                    `json:"observed"`
	ControlRTT   int64                     `json:"control_rtt_us"`
	ClockSkewMs  *int64                    `json:"clock_skew_ms"` // control's clock minus ours; nil if unknown
	NAT          string                    `json:"nat"`
	NATBasis     string                    `json:"nat_basis"`
	Candidates   []string                  `json:"candidates"`
	PortMapping  string                    `json:"port_mapping"`
	Gateway      string                    `json:"gateway"`
	Sources      []diagEndpoint            `json:"sources"`
	Destinations []diagEndpoint            `json:"destinations"`
	Relays       []diagRelay               `json:"relays"`
	UDPBuffers   map[string]diagBufferSize `json:"udp_buffers"`
}

type diagEndpoint struct {
	Name    string     `json:"name"`
	Route   string     `json:"route"`
	Refused string     `json:"refused"`
	Peers   []diagPeer `json:"peers"`
}

type diagPeer struct {
	ID            string `json:"id"`
	Route         string `json:"route"`
	Path          string `json:"path"`
	Remote        string `json:"remote"`
	RTTMicro      int64  `json:"rtt_us"`
	Error         string `json:"error"`
	NAT           string `json:"nat"`
	PunchAttempts int    `json:"punch_attempts"`
	PairsTried    int    `json:"pairs_tried"`
}

type diagRelay struct {
	ID        string `json:"id"`
	Addr      string `json:"addr"`
	Connected bool   `json:"connected"`
	RTTMicro  int64  `json:"rtt_us"`
}

type diagBufferSize struct {
	Receive int `json:"receive"`
	Send    int `json:"send"`
}

// fetchStatus reads the instance's status through Manager.GetStatus: it
// already holds everything diagnose needs, so no new method is required.
func fetchStatus(e *env) (diagStatus, error) {
	var raw string
	if err := e.call(dbusapi.ManagerIface+".GetStatus", nil, &raw); err != nil {
		return diagStatus{}, err
	}
	var st diagStatus
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return diagStatus{}, fail(exitFailed, "decode the instance's status: %v", err)
	}
	return st, nil
}
