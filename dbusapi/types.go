package dbusapi

import "github.com/godbus/dbus/v5"

// AdminGroup's members may call mutating methods, as root may.
const AdminGroup = "connetd-admin"

// PeerInfo is one peer of an endpoint, signature (ssssxttsuu).
type PeerInfo struct {
	ID            string // peer ID (hex)
	Route         string // the peer's route setting
	Path          string // direct, relay or none
	Remote        string // address of the path in use
	RTTMicros     int64
	BytesIn       uint64
	BytesOut      uint64
	NAT           string // the peer's NAT behaviour: none, easy, hard or unknown
	PunchAttempts uint32 // hole-punching attempts toward the peer
	PairsTried    uint32 // (socket, address) pairs probed, random ports included
}

// EndpointInfo is one row of ListSources/ListDestinations, (sssso).
type EndpointInfo struct {
	Name    string
	Address string
	Route   string
	Origin  string // config or runtime
	Path    dbus.ObjectPath
}

// ClientInfo is a client connected to control, (ssas).
type ClientInfo struct {
	ID        string
	Address   string
	Endpoints []string // role:name
}

// ControlEndpoint is an endpoint name known to control, (suu).
type ControlEndpoint struct {
	Name         string
	Sources      uint32
	Destinations uint32
}

// RelayInfo is a relay connected to control, or a client connected to a
// relay, (ss).
type RelayInfo struct {
	ID      string
	Address string
}

// RelayEndpoint is an endpoint a relay splices, (suut).
type RelayEndpoint struct {
	Name         string
	Sources      uint32
	Destinations uint32
	Bytes        uint64
}
