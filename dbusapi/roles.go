package dbusapi

import (
	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/config"
)

// EndpointInfo is one row of ListSources/ListDestinations, (sssso).
type EndpointInfo struct {
	Name    string
	Address string
	Route   string
	Origin  string // config or runtime
	Path    dbus.ObjectPath
}

// clientAPI is the Client interface.
type clientAPI struct{ s *Server }

func optString(options map[string]dbus.Variant, key string) (string, *dbus.Error) {
	v, ok := options[key]
	if !ok {
		return "", nil
	}
	s, ok := v.Value().(string)
	if !ok {
		return "", invalid("option %q must be a string, not %s", key, v.Signature())
	}
	return s, nil
}

func checkOptions(options map[string]dbus.Variant, known ...string) *dbus.Error {
	for k := range options {
		found := false
		for _, n := range known {
			found = found || k == n
		}
		if !found {
			return invalid("unknown option %q (known: %v)", k, known)
		}
	}
	return nil
}

// AddSource adds a source listening on addr; options: route (s).
func (c *clientAPI) AddSource(sender dbus.Sender, name, addr string, options map[string]dbus.Variant) (dbus.ObjectPath, *dbus.Error) {
	if err := c.s.authorize(sender); err != nil {
		return "", err
	}
	if err := checkOptions(options, "route"); err != nil {
		return "", err
	}
	route, derr := optString(options, "route")
	if derr != nil {
		return "", derr
	}
	if err := c.s.d.AddSource(name, config.Source{Addr: addr, Route: route}); err != nil {
		return "", dbusError(err)
	}
	c.s.sync()
	return EndpointPath("source", name), nil
}

// RemoveSource removes a source and closes its listener.
func (c *clientAPI) RemoveSource(sender dbus.Sender, name string) *dbus.Error {
	if err := c.s.authorize(sender); err != nil {
		return err
	}
	if err := c.s.d.RemoveSource(name); err != nil {
		return dbusError(err)
	}
	c.s.sync()
	return nil
}

// AddDestination adds a destination forwarding to addr; options: route (s),
// proxy-proto-version (s), file-server-root (s).
func (c *clientAPI) AddDestination(sender dbus.Sender, name, addr string, options map[string]dbus.Variant) (dbus.ObjectPath, *dbus.Error) {
	if err := c.s.authorize(sender); err != nil {
		return "", err
	}
	if err := checkOptions(options, "route", "proxy-proto-version", "file-server-root"); err != nil {
		return "", err
	}
	var d config.Destination
	d.Addr = addr
	for key, dst := range map[string]*string{"route": &d.Route, "proxy-proto-version": &d.ProxyProtoVersion, "file-server-root": &d.FileServerRoot} {
		v, derr := optString(options, key)
		if derr != nil {
			return "", derr
		}
		*dst = v
	}
	if err := c.s.d.AddDestination(name, d); err != nil {
		return "", dbusError(err)
	}
	c.s.sync()
	return EndpointPath("destination", name), nil
}

// RemoveDestination removes a destination.
func (c *clientAPI) RemoveDestination(sender dbus.Sender, name string) *dbus.Error {
	if err := c.s.authorize(sender); err != nil {
		return err
	}
	if err := c.s.d.RemoveDestination(name); err != nil {
		return dbusError(err)
	}
	c.s.sync()
	return nil
}

func (c *clientAPI) list(kind string) []EndpointInfo {
	out := []EndpointInfo{}
	for _, ep := range c.s.d.Endpoints() {
		if ep.Kind == kind {
			out = append(out, EndpointInfo{Name: ep.Name, Address: ep.Addr, Route: ep.Route, Origin: ep.Origin, Path: EndpointPath(kind, ep.Name)})
		}
	}
	return out
}

// ListSources lists the sources.
func (c *clientAPI) ListSources() ([]EndpointInfo, *dbus.Error) { return c.list("source"), nil }

// ListDestinations lists the destinations.
func (c *clientAPI) ListDestinations() ([]EndpointInfo, *dbus.Error) {
	return c.list("destination"), nil
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

// RelayInfo is a relay connected to control, (ss).
type RelayInfo struct {
	ID      string
	Address string
}

// controlAPI is the Control interface (server and control roles).
type controlAPI struct{ s *Server }

// ListClients lists the connected clients.
func (c *controlAPI) ListClients() ([]ClientInfo, *dbus.Error) {
	st, _ := c.s.d.ControlStatus()
	out := []ClientInfo{}
	for _, cl := range st.Clients {
		out = append(out, ClientInfo{ID: cl.ID, Address: cl.Addr, Endpoints: append([]string{}, cl.Endpoints...)})
	}
	return out, nil
}

// ListEndpoints lists endpoint names with their number of sources and
// destinations.
func (c *controlAPI) ListEndpoints() ([]ControlEndpoint, *dbus.Error) {
	st, _ := c.s.d.ControlStatus()
	out := []ControlEndpoint{}
	for _, e := range st.Endpoints {
		out = append(out, ControlEndpoint{Name: e.Name, Sources: uint32(e.Sources), Destinations: uint32(e.Destinations)})
	}
	return out, nil
}

// ListRelays lists the relays connected to control.
func (c *controlAPI) ListRelays() ([]RelayInfo, *dbus.Error) {
	st, _ := c.s.d.ControlStatus()
	out := []RelayInfo{}
	for _, r := range st.Relays {
		out = append(out, RelayInfo{ID: r.ID, Address: r.Addr})
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

// RelayEndpoint is an endpoint a relay splices, (suut).
type RelayEndpoint struct {
	Name         string
	Sources      uint32
	Destinations uint32
	Bytes        uint64
}

// relayAPI is the Relay interface (server and relay roles).
type relayAPI struct{ s *Server }

// ListEndpoints lists the endpoints the relay may splice, with bytes.
func (r *relayAPI) ListEndpoints() ([]RelayEndpoint, *dbus.Error) {
	st, _ := r.s.d.RelayStatus()
	out := []RelayEndpoint{}
	for _, e := range st.Endpoints {
		out = append(out, RelayEndpoint{Name: e.Name, Sources: uint32(e.Sources), Destinations: uint32(e.Destinations), Bytes: uint64(e.Bytes)})
	}
	return out, nil
}

// ListClients lists the clients connected to the relay.
func (r *relayAPI) ListClients() ([]RelayInfo, *dbus.Error) {
	st, _ := r.s.d.RelayStatus()
	out := []RelayInfo{}
	for _, c := range st.Clients {
		out = append(out, RelayInfo{ID: c.ID, Address: c.Addr})
	}
	return out, nil
}
