package dbusapi

import (
	"reflect"

	"github.com/godbus/dbus/v5/prop"
)

// counters are the Manager's numeric properties, computed from the status.
type counters struct {
	Endpoints, PeersDirect, PeersRelayed, Clients, Relays uint32
	BytesIn, BytesOut                                     uint64
	NAT                                                   string // client: its own NAT behaviour
}

func (s *Server) counters() counters {
	var c counters
	if st, ok := s.d.ClientStatus(); ok {
		c.NAT = st.NAT
		c.Endpoints = uint32(len(st.Sources) + len(st.Destinations))
		for _, list := range [][]endpointStatus{toEndpointStatus(st.Sources), toEndpointStatus(st.Destinations)} {
			for _, e := range list {
				c.BytesIn += uint64(e.in)
				c.BytesOut += uint64(e.out)
				for _, p := range e.paths {
					switch p {
					case "direct":
						c.PeersDirect++
					case "relay":
						c.PeersRelayed++
					}
				}
			}
		}
	}
	if st, ok := s.d.ControlStatus(); ok {
		c.Endpoints = uint32(len(st.Endpoints))
		c.Clients = uint32(len(st.Clients))
		c.Relays = uint32(len(st.Relays))
	}
	if st, ok := s.d.RelayStatus(); ok {
		if _, isControl := s.d.ControlStatus(); !isControl {
			c.Endpoints = uint32(len(st.Endpoints))
			c.Clients = uint32(len(st.Clients))
		}
		for _, e := range st.Endpoints {
			c.BytesOut += uint64(e.Bytes)
		}
	}
	return c
}

func (s *Server) managerProps() map[string]*prop.Prop {
	c := s.counters()
	constant := func(v any) *prop.Prop { return &prop.Prop{Value: v, Emit: prop.EmitConst} }
	live := func(v any) *prop.Prop { return &prop.Prop{Value: v, Emit: prop.EmitTrue} }
	return map[string]*prop.Prop{
		"Role":         constant(s.d.Role()),
		"Version":      constant(s.d.Version()),
		"Instance":     constant(s.d.Instance()),
		"State":        live(s.d.State()),
		"StatusText":   live(s.d.Summary()),
		"Endpoints":    live(c.Endpoints),
		"PeersDirect":  live(c.PeersDirect),
		"PeersRelayed": live(c.PeersRelayed),
		"Clients":      live(c.Clients),
		"Relays":       live(c.Relays),
		"BytesIn":      live(c.BytesIn),
		"BytesOut":     live(c.BytesOut),
		"NAT":          live(c.NAT),
	}
}

// setProp sets a property only when its value changed, so that
// PropertiesChanged means a change.
func setProp(p *prop.Properties, iface, name string, v any) {
	if reflect.DeepEqual(p.GetMust(iface, name), v) {
		return
	}
	p.SetMust(iface, name, v)
}

func (s *Server) syncManager() {
	c := s.counters()
	for name, v := range map[string]any{
		"State": s.d.State(), "StatusText": s.d.Summary(), "Endpoints": c.Endpoints,
		"PeersDirect": c.PeersDirect, "PeersRelayed": c.PeersRelayed, "Clients": c.Clients,
		"Relays": c.Relays, "BytesIn": c.BytesIn, "BytesOut": c.BytesOut, "NAT": c.NAT,
	} {
		setProp(s.props, ManagerIface, name, v)
	}
}
