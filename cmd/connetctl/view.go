package main

import (
	"fmt"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/dbusapi"
)

// statusView is everything `connetctl status` shows; --json prints it.
type statusView struct {
	Instance string `json:"instance"`
	Role     string `json:"role"`
	State    string `json:"state"`
	Summary  string `json:"summary"`
	NAT      string `json:"nat,omitempty"` // client: its own NAT behaviour
	// FlowMoves counts open connections moved between paths, by
	// "old→new"; FlowMoveStallMaxMS is the longest stall one caused.
	FlowMoves          map[string]uint64 `json:"flow_moves,omitempty"`
	FlowMoveStallMaxMS uint64            `json:"flow_move_stall_max_ms,omitempty"`
	// ControlAddr and ControlNode: client and relay, the control in use.
	ControlAddr string        `json:"control_addr,omitempty"`
	ControlNode string        `json:"control_node,omitempty"`
	Endpoints   []endpointRow `json:"endpoints,omitempty"` // client

	Clients          []dbusapi.ClientInfo      `json:"clients,omitempty"`           // server, control
	ControlEndpoints []dbusapi.ControlEndpoint `json:"control_endpoints,omitempty"` // server, control
	Relays           []dbusapi.RelayInfo       `json:"relays,omitempty"`            // server, control
	RelayEndpoints   []dbusapi.RelayEndpoint   `json:"relay_endpoints,omitempty"`   // server, relay
}

// endpointRow is a source or destination with its live state.
type endpointRow struct {
	Kind     string             `json:"kind"`
	Name     string             `json:"name"`
	Address  string             `json:"address"`
	Route    string             `json:"route"`
	Origin   string             `json:"origin"`
	State    string             `json:"state"`
	BytesIn  uint64             `json:"bytes_in"`
	BytesOut uint64             `json:"bytes_out"`
	Peers    []dbusapi.PeerInfo `json:"peers"`
}

type tokenCounts struct {
	Config  uint32 `json:"config"`
	Runtime uint32 `json:"runtime"`
	Revoked uint32 `json:"revoked"`
}

func gather(e *env) (statusView, error) {
	v := statusView{Instance: e.g.instance}
	for name, dst := range map[string]*string{"Role": &v.Role, "State": &v.State, "StatusText": &v.Summary} {
		if err := e.property(dbusapi.ManagerIface+"."+name, dst); err != nil {
			return v, err
		}
	}
	if v.Role == "client" || v.Role == "relay" {
		for name, dst := range map[string]*string{"ControlAddr": &v.ControlAddr, "ControlNode": &v.ControlNode} {
			if err := e.property(dbusapi.ManagerIface+"."+name, dst); err != nil {
				return v, err
			}
		}
	}
	switch v.Role {
	case "client":
		if err := e.property(dbusapi.ManagerIface+".NAT", &v.NAT); err != nil {
			return v, err
		}
		if err := e.property(dbusapi.ManagerIface+".FlowMoves", &v.FlowMoves); err != nil {
			return v, err
		}
		if err := e.property(dbusapi.ManagerIface+".FlowMoveStallMaxMS", &v.FlowMoveStallMaxMS); err != nil {
			return v, err
		}
		rows, err := endpointRows(e)
		if err != nil {
			return v, err
		}
		v.Endpoints = rows
	case "server", "control":
		if err := e.call(dbusapi.ControlIface+".ListClients", nil, &v.Clients); err != nil {
			return v, err
		}
		if err := e.call(dbusapi.ControlIface+".ListEndpoints", nil, &v.ControlEndpoints); err != nil {
			return v, err
		}
		if err := e.call(dbusapi.ControlIface+".ListRelays", nil, &v.Relays); err != nil {
			return v, err
		}
	}
	if v.Role == "server" || v.Role == "relay" {
		if err := e.call(dbusapi.RelayIface+".ListEndpoints", nil, &v.RelayEndpoints); err != nil {
			return v, err
		}
	}
	return v, nil
}

func endpointRows(e *env) ([]endpointRow, error) {
	rows := []endpointRow{}
	for _, kind := range []string{"source", "destination"} {
		var list []dbusapi.EndpointInfo
		method := map[string]string{"source": "ListSources", "destination": "ListDestinations"}[kind]
		if err := e.call(dbusapi.ClientIface+"."+method, nil, &list); err != nil {
			return nil, err
		}
		for _, ep := range list {
			row := endpointRow{Kind: kind, Name: ep.Name, Address: ep.Address, Route: ep.Route, Origin: ep.Origin, Peers: []dbusapi.PeerInfo{}}
			obj := e.conn.Object(e.obj.Destination(), ep.Path)
			var all map[string]dbus.Variant
			if err := obj.Call(dbusapi.PropertiesIface+".GetAll", 0, dbusapi.EndpointIface).Store(&all); err != nil {
				return nil, busError(err)
			}
			if err := storeProps(all, map[string]any{"State": &row.State, "BytesIn": &row.BytesIn, "BytesOut": &row.BytesOut, "Peers": &row.Peers}); err != nil {
				return nil, err
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

func storeProps(all map[string]dbus.Variant, into map[string]any) error {
	for name, dst := range into {
		v, ok := all[name]
		if !ok {
			return fail(exitFailed, "endpoint has no %s property", name)
		}
		if err := v.Store(dst); err != nil {
			return fail(exitFailed, "endpoint property %s: %v", name, err)
		}
	}
	return nil
}

// show makes a read-only command: fetch, then print as a table, or as
// JSON (of asJSON(v) when given, else of v).
func show[T any](fetch func(*env) (T, error), table func(T) string, asJSON func(T) any) func(*env, []string) error {
	return func(e *env, args []string) error {
		if err := positional(args, 0, "no arguments"); err != nil {
			return err
		}
		if err := e.connect(); err != nil {
			return err
		}
		v, err := fetch(e)
		if err != nil {
			return err
		}
		if e.g.json {
			if asJSON != nil {
				return e.printJSON(asJSON(v))
			}
			return e.printJSON(v)
		}
		_, err = fmt.Fprint(e.stdout, table(v))
		return err
	}
}

// listOf fetches a list method's answer.
func listOf[T any](method string) func(*env) ([]T, error) {
	return func(e *env) ([]T, error) {
		var out []T
		err := e.call(method, nil, &out)
		return out, err
	}
}

var (
	cmdStatus  = show(gather, formatStatus, nil)
	cmdList    = show(endpointRows, formatList, nil)
	cmdPeers   = show(endpointRows, formatPeers, func(rows []endpointRow) any { return peerRows(rows) })
	cmdClients = show(listOf[dbusapi.ClientInfo](dbusapi.ControlIface+".ListClients"), formatClients, nil)
	cmdRelays  = show(listOf[dbusapi.RelayInfo](dbusapi.ControlIface+".ListRelays"), formatRelays, nil)
)

// peerRow is one line of `connetctl peers --json`.
type peerRow struct {
	Endpoint string `json:"endpoint"`
	Kind     string `json:"kind"`
	dbusapi.PeerInfo
}

func peerRows(rows []endpointRow) []peerRow {
	out := []peerRow{}
	for _, r := range rows {
		for _, p := range r.Peers {
			out = append(out, peerRow{Endpoint: r.Name, Kind: r.Kind, PeerInfo: p})
		}
	}
	return out
}
