// Package msgid holds the journal MESSAGE_IDs of connetd's significant
// events. Each id is a fixed random 128-bit value (systemd-id128 new) that
// names one kind of event for good: journalctl MESSAGE_ID=<id> finds it and
// units/connetd.catalog explains it under journalctl -x. An id must never be
// reused for another event, and every id here has exactly one catalog entry
// (the test checks both ways).
package msgid

import "log/slog"

// ID is a journal MESSAGE_ID: 32 lowercase hex digits.
type ID string

// Key is the attribute key that carries the id. The journald handler maps
// it to the MESSAGE_ID field; text and JSON output keep it as message_id.
const Key = "message_id"

// Attr is the attribute to pass with the event's log call.
func (id ID) Attr() slog.Attr { return slog.String(Key, string(id)) }

const (
	// ControlConnected: a client completed its handshake with control.
	ControlConnected ID = "60afa1d11ae447058f6519caa5cba041"
	// ControlLost: a client's control session ended or could not be
	// opened; it retries with backoff while peer connections carry on.
	ControlLost ID = "9c44ed7518f9432c96280396de8d8c78"
	// ClientRefused: control refused this client (as the client sees it),
	// typically for its token.
	ClientRefused ID = "b1ed14b91a1d467c9a7ecfbd88addefc"
	// TokenRefused: control refused a client or relay for an invalid token
	// or its token-restriction (as the server sees it).
	TokenRefused ID = "a6cf13fa3dc04d7ca845372bf432de71"
	// EndpointRefused: an endpoint announce was refused, by a limit or a
	// token-restriction; logged by control and by the client refused.
	EndpointRefused ID = "5560c7cf827a48a1982b2b36fd4c70a2"
	// PeerPathUp: a direct or relayed connection to a peer came up.
	PeerPathUp ID = "ee3e73230e03412c93ebd29352934679"
	// PeerPathChanged: after a network change the direct path to a peer
	// went silent; it is dropped and a new one punched, the relay carrying
	// traffic meanwhile.
	PeerPathChanged ID = "919902a7fca94e21ac4ca8d787e05749"
	// PeerPathLost: a direct or relayed connection to a peer ended.
	PeerPathLost ID = "f09cb54383ff42488bd0a6bc242195ed"
	// FlowMoved: an open TCP connection went on over another path
	// (a resumable flow), with the stall that caused.
	FlowMoved ID = "bc5b7bf230114bbaad4e23371a0a44be"
	// PunchFailed: a hole-punching attempt found no direct path.
	PunchFailed ID = "7f082e1413be4f29be12ececaf26a36d"
	// RelayLost: a client's connection to a relay ended.
	RelayLost ID = "215be0a3883f470db0e7a8f39403e7d2"
	// ReloadApplied: a reload (SIGHUP, systemctl reload) took effect.
	ReloadApplied ID = "b94de43998a9454ba10f203c9ed7d146"
	// ReloadRejected: a reload was refused; the running configuration
	// stays in force.
	ReloadRejected ID = "95c0d45368d94b4da9de1826c5325a63"
	// PortMapped: the gateway granted (or changed) a port mapping.
	PortMapped ID = "633f0f0159004e55a5ee9282f7b337e8"
	// PortMappingLost: a port mapping could not be renewed.
	PortMappingLost ID = "162c8d00a60b49bfb8da1b9b667fe479"
	// UnitStarted: a connection found an on-demand destination's service
	// down (start-unit); connetd started the unit and the service accepts.
	UnitStarted ID = "0742093644ddccf4484b0008157fbae9"
	// UnitStartFailed: starting a destination's start-unit failed, or its
	// address did not accept in time; the connection was refused.
	UnitStartFailed ID = "0a3f5ac09d9ed0df00cc7e0b82f751c0"
	// UnitStopped: connetd stopped a destination's start-unit after
	// stop-idle without connections (or could not).
	UnitStopped ID = "9b73fb7ff326897b0e6af82746dc4f8d"
)

// All lists every id with its constant's name, for the catalog test and
// the docs.
var All = map[string]ID{
	"ControlConnected": ControlConnected,
	"ControlLost":      ControlLost,
	"ClientRefused":    ClientRefused,
	"TokenRefused":     TokenRefused,
	"EndpointRefused":  EndpointRefused,
	"PeerPathUp":       PeerPathUp,
	"PeerPathChanged":  PeerPathChanged,
	"PeerPathLost":     PeerPathLost,
	"FlowMoved":        FlowMoved,
	"PunchFailed":      PunchFailed,
	"RelayLost":        RelayLost,
	"ReloadApplied":    ReloadApplied,
	"ReloadRejected":   ReloadRejected,
	"PortMapped":       PortMapped,
	"PortMappingLost":  PortMappingLost,
	"UnitStarted":      UnitStarted,
	"UnitStartFailed":  UnitStartFailed,
	"UnitStopped":      UnitStopped,
}
