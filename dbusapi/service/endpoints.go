package service

import (
	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/daemon"
	"github.com/connetd/connetd/dbusapi"
)

type clientEndpoint = client.EndpointStatus

// endpointObject is an exported source or destination.
type endpointObject struct {
	kind, name string
	props      *prop.Properties
	paths      map[string]string // peer ID → path last signalled
}

func peerInfos(e clientEndpoint) []dbusapi.PeerInfo {
	out := make([]dbusapi.PeerInfo, 0, len(e.Peers))
	for _, p := range e.Peers {
		out = append(out, dbusapi.PeerInfo{ID: p.ID, Route: p.Route, Path: p.Path, Remote: p.Remote,
			RTTMicros: p.RTTMicro, BytesIn: uint64(p.BytesIn), BytesOut: uint64(p.BytesOut),
			NAT: p.NAT, PunchAttempts: uint32(p.PunchAttempts), PairsTried: uint32(p.PairsTried)})
	}
	return out
}

// endpointValues are an endpoint's properties: its configuration, and its
// live state when the client reports it (st is nil for a moment after an
// endpoint is added).
func endpointValues(ep daemon.Endpoint, st *clientEndpoint) map[string]any {
	state, peers := "active", []dbusapi.PeerInfo{}
	var in, out uint64
	if st != nil {
		if st.Refused != "" {
			state = "refused: " + st.Refused
		}
		peers, in, out = peerInfos(*st), uint64(st.BytesIn), uint64(st.BytesOut)
	}
	return map[string]any{
		"Name": ep.Name, "Kind": ep.Kind, "Address": ep.Addr, "Route": ep.Route, "Origin": ep.Origin, "Protocol": ep.Proto,
		"ProxyProtoVersion": ep.ProxyProto, "State": state, "Peers": peers,
		"BytesIn": in, "BytesOut": out,
	}
}

// syncEndpoints exports an object per endpoint, removes objects of removed
// endpoints, refreshes properties and signals peer path changes.
func (s *Server) syncEndpoints(snap daemon.Snapshot, eps []daemon.Endpoint) {
	live := map[string]*clientEndpoint{}
	if st := snap.Client; st != nil {
		for i := range st.Sources {
			live["source/"+st.Sources[i].Name] = &st.Sources[i]
		}
		for i := range st.Destinations {
			live["destination/"+st.Destinations[i].Name] = &st.Destinations[i]
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[dbus.ObjectPath]bool{}
	for _, ep := range eps {
		path := dbusapi.EndpointPath(ep.Kind, ep.Name)
		seen[path] = true
		st := live[ep.Kind+"/"+ep.Name]
		values := endpointValues(ep, st)
		obj := s.endpoints[path]
		if obj == nil {
			var err error
			if obj, err = s.exportEndpoint(path, ep, values); err != nil {
				s.log.Warn("cannot export endpoint on D-Bus", "endpoint", ep.Name, "err", err)
				continue
			}
			s.endpoints[path] = obj
			all, _ := obj.props.GetAll(dbusapi.EndpointIface)
			_ = s.conn.Emit(dbusapi.ManagerPath, dbusapi.ObjectManagerIface+".InterfacesAdded", path,
				map[string]map[string]dbus.Variant{dbusapi.EndpointIface: all})
			_ = s.conn.Emit(dbusapi.ManagerPath, dbusapi.ManagerIface+".EndpointAdded", path, ep.Kind, ep.Name)
		} else {
			for name, v := range values {
				if err := setProp(obj.props, dbusapi.EndpointIface, name, v); err != nil {
					s.log.Debug("D-Bus property not signalled", "endpoint", ep.Name, "err", err)
				}
			}
		}
		if st != nil {
			s.signalPaths(path, obj, st.Peers)
		}
	}
	for path, obj := range s.endpoints {
		if seen[path] {
			continue
		}
		for _, iface := range []string{dbusapi.EndpointIface, dbusapi.PropertiesIface, "org.freedesktop.DBus.Introspectable"} {
			_ = s.conn.Export(nil, path, iface)
		}
		delete(s.endpoints, path)
		_ = s.conn.Emit(dbusapi.ManagerPath, dbusapi.ObjectManagerIface+".InterfacesRemoved", path, []string{dbusapi.EndpointIface})
		_ = s.conn.Emit(dbusapi.ManagerPath, dbusapi.ManagerIface+".EndpointRemoved", path, obj.kind, obj.name)
	}
	s.signalMoves(snap.Client)
}

// signalMoves emits FlowMoved on the endpoint object of every flow move
// the client made since the last one signalled. Status keeps the last few
// moves; a burst of more between two syncs signals those.
func (s *Server) signalMoves(st *client.Status) {
	if st == nil {
		return
	}
	for _, mv := range st.FlowMoves.Recent {
		if mv.Seq <= s.moveSeq {
			continue
		}
		s.moveSeq = mv.Seq
		if !s.movesSeen {
			continue
		}
		path := dbusapi.EndpointPath(mv.Kind, mv.Endpoint)
		if s.endpoints[path] != nil {
			_ = s.conn.Emit(path, dbusapi.EndpointIface+".FlowMoved", mv.Peer, mv.Old, mv.New, uint64(max(mv.StallMS, 0)))
		}
	}
	s.movesSeen = true
}

// signalPaths emits PeerPathChanged for every peer whose path differs from
// the one last signalled: a new peer changes from "", and a peer that went
// away changes to "none" (and is new again if it comes back).
func (s *Server) signalPaths(path dbus.ObjectPath, obj *endpointObject, peers []client.PeerStatus) {
	now := make(map[string]bool, len(peers))
	for _, p := range peers {
		now[p.ID] = true
		if old, ok := obj.paths[p.ID]; !ok || old != p.Path {
			_ = s.conn.Emit(path, dbusapi.EndpointIface+".PeerPathChanged", p.ID, old, p.Path)
			obj.paths[p.ID] = p.Path
		}
	}
	for id, old := range obj.paths {
		if now[id] {
			continue
		}
		if old != "none" {
			_ = s.conn.Emit(path, dbusapi.EndpointIface+".PeerPathChanged", id, old, "none")
		}
		delete(obj.paths, id)
	}
}

func (s *Server) exportEndpoint(path dbus.ObjectPath, ep daemon.Endpoint, values map[string]any) (*endpointObject, error) {
	m := map[string]*prop.Prop{}
	for name, v := range values {
		emit := prop.EmitTrue
		if name == "Name" || name == "Kind" {
			emit = prop.EmitConst
		}
		m[name] = &prop.Prop{Value: v, Emit: emit}
	}
	props, err := prop.Export(s.conn, path, prop.Map{dbusapi.EndpointIface: m})
	if err != nil {
		return nil, err
	}
	node := &introspect.Node{Name: string(path), Interfaces: []introspect.Interface{
		introspect.IntrospectData, prop.IntrospectData,
		{Name: dbusapi.EndpointIface, Properties: props.Introspection(dbusapi.EndpointIface), Signals: []introspect.Signal{
			{Name: "PeerPathChanged", Args: []introspect.Arg{{Name: "peer", Type: "s"}, {Name: "old", Type: "s"}, {Name: "new", Type: "s"}}},
			{Name: "FlowMoved", Args: []introspect.Arg{{Name: "peer", Type: "s"}, {Name: "old", Type: "s"}, {Name: "new", Type: "s"},
				{Name: "stall_ms", Type: "t"}}},
		}},
	}}
	if err := s.conn.Export(introspect.NewIntrospectable(node), path, "org.freedesktop.DBus.Introspectable"); err != nil {
		return nil, err
	}
	return &endpointObject{kind: ep.Kind, name: ep.Name, props: props, paths: map[string]string{}}, nil
}

// objectManager implements org.freedesktop.DBus.ObjectManager, so generic
// tools (busctl, gdbus) can list every endpoint object.
type objectManager struct{ s *Server }

// GetManagedObjects returns the endpoint objects and their properties.
func (o *objectManager) GetManagedObjects() (map[dbus.ObjectPath]map[string]map[string]dbus.Variant, *dbus.Error) {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	out := map[dbus.ObjectPath]map[string]map[string]dbus.Variant{}
	for path, obj := range o.s.endpoints {
		all, err := obj.props.GetAll(dbusapi.EndpointIface)
		if err != nil {
			return nil, err
		}
		out[path] = map[string]map[string]dbus.Variant{dbusapi.EndpointIface: all}
	}
	return out, nil
}
