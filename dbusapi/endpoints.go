package dbusapi

import (
	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/daemon"
)

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

// endpointStatus is the part of a client endpoint's status the API uses.
type endpointStatus struct {
	refused string
	in, out int64
	paths   []string
	peers   []PeerInfo
}

func toEndpointStatus(list []client.EndpointStatus) []endpointStatus {
	out := make([]endpointStatus, 0, len(list))
	for _, e := range list {
		es := endpointStatus{refused: e.Refused, in: e.BytesIn, out: e.BytesOut, peers: []PeerInfo{}}
		for _, p := range e.Peers {
			es.paths = append(es.paths, p.Path)
			es.peers = append(es.peers, PeerInfo{ID: p.ID, Route: p.Route, Path: p.Path, Remote: p.Remote,
				RTTMicros: p.RTTMicro, BytesIn: uint64(p.BytesIn), BytesOut: uint64(p.BytesOut),
				NAT: p.NAT, PunchAttempts: uint32(p.PunchAttempts), PairsTried: uint32(p.PairsTried)})
		}
		out = append(out, es)
	}
	return out
}

// endpointObject is an exported source or destination.
type endpointObject struct {
	kind, name string
	props      *prop.Properties
	paths      map[string]string // peer ID → path, to signal changes
}

func endpointValues(ep daemon.Endpoint, st endpointStatus) map[string]any {
	state := "active"
	if st.refused != "" {
		state = "refused: " + st.refused
	}
	return map[string]any{
		"Name": ep.Name, "Kind": ep.Kind, "Address": ep.Addr, "Route": ep.Route, "Origin": ep.Origin,
		"ProxyProtoVersion": ep.ProxyProto, "State": state, "Peers": st.peers,
		"BytesIn": uint64(st.in), "BytesOut": uint64(st.out),
	}
}

func (s *Server) sync() {
	s.syncManager()
	s.syncEndpoints()
}

// syncEndpoints exports an object per endpoint, removes objects of removed
// endpoints, refreshes properties and signals peer path changes.
func (s *Server) syncEndpoints() {
	eps := s.d.Endpoints()
	byName := map[string]endpointStatus{}
	if st, ok := s.d.ClientStatus(); ok {
		for i, e := range toEndpointStatus(st.Sources) {
			byName["source/"+st.Sources[i].Name] = e
		}
		for i, e := range toEndpointStatus(st.Destinations) {
			byName["destination/"+st.Destinations[i].Name] = e
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[dbus.ObjectPath]bool{}
	for _, ep := range eps {
		path := EndpointPath(ep.Kind, ep.Name)
		seen[path] = true
		st := byName[ep.Kind+"/"+ep.Name]
		if st.peers == nil {
			st.peers = []PeerInfo{}
		}
		values := endpointValues(ep, st)
		obj := s.endpoints[path]
		if obj == nil {
			var err error
			if obj, err = s.exportEndpoint(path, ep, values); err != nil {
				s.log.Warn("cannot export endpoint on D-Bus", "endpoint", ep.Name, "err", err)
				continue
			}
			s.endpoints[path] = obj
			all, _ := obj.props.GetAll(EndpointIface)
			_ = s.conn.Emit(ManagerPath, ObjectManagerIface+".InterfacesAdded", path,
				map[string]map[string]dbus.Variant{EndpointIface: all})
			_ = s.conn.Emit(ManagerPath, ManagerIface+".EndpointAdded", path, ep.Kind, ep.Name)
		} else {
			for name, v := range values {
				setProp(obj.props, EndpointIface, name, v)
			}
		}
		// A new peer counts as a change from "" (unknown).
		for _, p := range st.peers {
			if old := obj.paths[p.ID]; old != p.Path {
				_ = s.conn.Emit(path, EndpointIface+".PeerPathChanged", p.ID, old, p.Path)
			}
			obj.paths[p.ID] = p.Path
		}
	}
	for path, obj := range s.endpoints {
		if seen[path] {
			continue
		}
		for _, iface := range []string{EndpointIface, PropertiesIface, "org.freedesktop.DBus.Introspectable"} {
			_ = s.conn.Export(nil, path, iface)
		}
		delete(s.endpoints, path)
		_ = s.conn.Emit(ManagerPath, ObjectManagerIface+".InterfacesRemoved", path, []string{EndpointIface})
		_ = s.conn.Emit(ManagerPath, ManagerIface+".EndpointRemoved", path, obj.kind, obj.name)
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
	props, err := prop.Export(s.conn, path, prop.Map{EndpointIface: m})
	if err != nil {
		return nil, err
	}
	node := &introspect.Node{Name: string(path), Interfaces: []introspect.Interface{
		introspect.IntrospectData, prop.IntrospectData,
		{Name: EndpointIface, Properties: props.Introspection(EndpointIface), Signals: []introspect.Signal{
			{Name: "PeerPathChanged", Args: []introspect.Arg{{Name: "peer", Type: "s"}, {Name: "old", Type: "s"}, {Name: "new", Type: "s"}}},
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
		all, err := obj.props.GetAll(EndpointIface)
		if err != nil {
			return nil, err
		}
		out[path] = map[string]map[string]dbus.Variant{EndpointIface: all}
	}
	return out, nil
}
