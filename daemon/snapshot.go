package daemon

import (
	"encoding/json"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/relay"
)

// Snapshot is the daemon's state at one moment, typed, so that STATUS=,
// the status endpoint and D-Bus read the same values without decoding
// JSON. Exactly the parts the role has are set: Client for a client,
// Control for control, Relay for a relay, both of those for a server.
type Snapshot struct {
	Role    string
	Version string
	State   string // starting, running, reloading or stopping
	Summary string // the one line of STATUS=

	Client  *client.Status
	Control *control.Status
	Relay   *relay.Status

	UDPBuffers map[string]BufferSize // by socket name
}

// daemonJSON is what the daemon adds to the role's status in JSON.
type daemonJSON struct {
	Role       string                `json:"role"`
	Version    string                `json:"version"`
	UDPBuffers map[string]BufferSize `json:"udp_buffers"`
}

// The status endpoint has always served a client's, control's or relay's
// status at the top level (embedding flattens it), and a server's as
// "control" and "relay" objects; one type per shape keeps it so.
type (
	clientJSON struct {
		*client.Status
		daemonJSON
	}
	controlJSON struct {
		*control.Status
		daemonJSON
	}
	relayJSON struct {
		*relay.Status
		daemonJSON
	}
	serverJSON struct {
		Control *control.Status `json:"control"`
		Relay   *relay.Status   `json:"relay"`
		daemonJSON
	}
)

// MarshalJSON gives what the status endpoint and GetStatus serve.
func (s Snapshot) MarshalJSON() ([]byte, error) {
	dj := daemonJSON{Role: s.Role, Version: s.Version, UDPBuffers: s.UDPBuffers}
	if dj.UDPBuffers == nil {
		dj.UDPBuffers = map[string]BufferSize{}
	}
	switch {
	case s.Client != nil:
		return json.Marshal(clientJSON{s.Client, dj})
	case s.Control != nil && s.Relay != nil:
		return json.Marshal(serverJSON{s.Control, s.Relay, dj})
	case s.Control != nil:
		return json.Marshal(controlJSON{s.Control, dj})
	case s.Relay != nil:
		return json.Marshal(relayJSON{s.Relay, dj})
	}
	return json.Marshal(dj)
}
