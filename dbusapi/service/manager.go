package service

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"

	"github.com/connetd/connetd/daemon"
	"github.com/connetd/connetd/dbusapi"
)

// manager is the Manager interface, present for every role.
type manager struct{ s *Server }

// Reload re-reads the configuration file, as systemctl reload does.
func (m *manager) Reload(sender dbus.Sender) *dbus.Error {
	if err := m.s.authorize(sender); err != nil {
		return err
	}
	defer m.s.sync()
	return dbusError(m.s.d.Reload())
}

// GetStatus returns the JSON the status endpoint serves.
func (m *manager) GetStatus() (string, *dbus.Error) {
	b, err := json.Marshal(m.s.d.Status())
	if err != nil {
		return "", dbusError(err)
	}
	return string(b), nil
}

// managerValues are the Manager's live properties, from one snapshot.
func managerValues(snap daemon.Snapshot) map[string]any {
	var endpoints, direct, relayed, clients, relays uint32
	var in, out uint64
	nat, ctlAddr, ctlNode := "", "", ""
	moves, stallMax := map[string]uint64{}, uint64(0)
	if st := snap.Client; st != nil {
		nat, ctlAddr, ctlNode = st.NAT, st.ControlAddr, st.ControlNode
		for k, n := range st.FlowMoves.Counts {
			moves[k] = uint64(n)
		}
		stallMax = uint64(max(st.FlowMoves.MaxStallMS, 0))
		endpoints = uint32(len(st.Sources) + len(st.Destinations))
		for _, list := range [][]clientEndpoint{st.Sources, st.Destinations} {
			for _, e := range list {
				in += uint64(e.BytesIn)
				out += uint64(e.BytesOut)
			}
		}
		d, r, _ := st.PeerCounts() // as STATUS= counts
		direct, relayed = uint32(d), uint32(r)
	}
	if st := snap.Control; st != nil {
		endpoints, clients, relays = uint32(len(st.Endpoints)), uint32(len(st.Clients)), uint32(len(st.Relays))
	}
	if st := snap.Relay; st != nil {
		if snap.Control == nil {
			ctlAddr, ctlNode = st.ControlAddr, st.ControlNode
		}
		if snap.Control == nil { // a server counts what control knows
			endpoints, clients = uint32(len(st.Endpoints)), uint32(len(st.Clients))
		}
		for _, e := range st.Endpoints {
			out += uint64(e.Bytes)
		}
	}
	return map[string]any{
		"State": snap.State, "StatusText": snap.Summary, "Endpoints": endpoints,
		"PeersDirect": direct, "PeersRelayed": relayed, "Clients": clients, "Relays": relays,
		"BytesIn": in, "BytesOut": out, "NAT": nat, "ControlAddr": ctlAddr, "ControlNode": ctlNode,
		"FlowMoves": moves, "FlowMoveStallMaxMS": stallMax,
	}
}

func (s *Server) managerProps(snap daemon.Snapshot) map[string]*prop.Prop {
	m := map[string]*prop.Prop{}
	for name, v := range map[string]any{"Role": s.d.Role(), "Version": s.d.Version(), "Instance": s.d.Instance()} {
		m[name] = &prop.Prop{Value: v, Emit: prop.EmitConst}
	}
	for name, v := range managerValues(snap) {
		m[name] = &prop.Prop{Value: v, Emit: prop.EmitTrue}
	}
	return m
}

func (s *Server) syncManager(snap daemon.Snapshot) {
	for name, v := range managerValues(snap) {
		if err := setProp(s.props, dbusapi.ManagerIface, name, v); err != nil {
			s.log.Debug("D-Bus property not signalled", "err", err)
		}
	}
}

// setProp sets a property only when its value changed, so that
// PropertiesChanged means a change. prop has no setter for read-only
// properties that returns an error; SetMust panics when the signal cannot be
// sent (the bus went away), after storing the value and unlocking. A lost
// bus must not take the daemon down, so that panic becomes an error.
func setProp(p *prop.Properties, iface, name string, v any) (err error) {
	if reflect.DeepEqual(p.GetMust(iface, name), v) {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("set %s.%s: %v", iface, name, r)
		}
	}()
	p.SetMust(iface, name, v)
	return nil
}
