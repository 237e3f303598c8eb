package service

import (
	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/dbusapi"
	"github.com/connetd/connetd/relay"
)

// controlAPI is the Control interface (server and control roles).
type controlAPI struct{ s *Server }

func (c *controlAPI) status() control.Status {
	if st := c.s.d.Snapshot().Control; st != nil {
		return *st
	}
	return control.Status{}
}

// ListClients lists the connected clients.
func (c *controlAPI) ListClients() ([]dbusapi.ClientInfo, *dbus.Error) {
	st := c.status()
	out := []dbusapi.ClientInfo{}
	for _, cl := range st.Clients {
		out = append(out, dbusapi.ClientInfo{ID: cl.ID, Address: cl.Addr, Endpoints: append([]string{}, cl.Endpoints...)})
	}
	return out, nil
}

// ListEndpoints lists endpoint names with their number of sources and
// destinations.
func (c *controlAPI) ListEndpoints() ([]dbusapi.ControlEndpoint, *dbus.Error) {
	st := c.status()
	out := []dbusapi.ControlEndpoint{}
	for _, e := range st.Endpoints {
		out = append(out, dbusapi.ControlEndpoint{Name: e.Name, Sources: uint32(e.Sources), Destinations: uint32(e.Destinations)})
	}
	return out, nil
}

// ListRelays lists the relays connected to control.
func (c *controlAPI) ListRelays() ([]dbusapi.RelayInfo, *dbus.Error) {
	st := c.status()
	out := []dbusapi.RelayInfo{}
	for _, r := range st.Relays {
		out = append(out, dbusapi.RelayInfo{ID: r.ID, Address: r.Addr})
	}
	return out, nil
}

// AddToken accepts a new client token.
func (c *controlAPI) AddToken(sender dbus.Sender, token string) *dbus.Error {
	if err := c.s.authorize(sender); err != nil {
		return err
	}
	return dbusError(c.s.d.AddToken(token))
}

// RevokeToken stops accepting a token and disconnects its clients at once.
func (c *controlAPI) RevokeToken(sender dbus.Sender, token string) *dbus.Error {
	if err := c.s.authorize(sender); err != nil {
		return err
	}
	return dbusError(c.s.d.RevokeToken(token))
}

// GetTokenCounts tells how many tokens come from the file and from run-time
// additions, and how many file tokens were revoked. Tokens are secrets and
// are never listed.
func (c *controlAPI) GetTokenCounts() (fromConfig, fromRuntime, revoked uint32, _ *dbus.Error) {
	a, b, r, err := c.s.d.TokenCounts()
	if err != nil {
		return 0, 0, 0, dbusError(err)
	}
	return uint32(a), uint32(b), uint32(r), nil
}

// relayAPI is the Relay interface (server and relay roles).
type relayAPI struct{ s *Server }

func (r *relayAPI) status() relay.Status {
	if st := r.s.d.Snapshot().Relay; st != nil {
		return *st
	}
	return relay.Status{}
}

// ListEndpoints lists the endpoints the relay may splice, with bytes.
func (r *relayAPI) ListEndpoints() ([]dbusapi.RelayEndpoint, *dbus.Error) {
	st := r.status()
	out := []dbusapi.RelayEndpoint{}
	for _, e := range st.Endpoints {
		out = append(out, dbusapi.RelayEndpoint{Name: e.Name, Sources: uint32(e.Sources), Destinations: uint32(e.Destinations), Bytes: uint64(e.Bytes)})
	}
	return out, nil
}

// ListClients lists the clients connected to the relay.
func (r *relayAPI) ListClients() ([]dbusapi.RelayInfo, *dbus.Error) {
	st := r.status()
	out := []dbusapi.RelayInfo{}
	for _, c := range st.Clients {
		out = append(out, dbusapi.RelayInfo{ID: c.ID, Address: c.Addr})
	}
	return out, nil
}
