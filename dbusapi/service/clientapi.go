package service

import (
	"strconv"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/dbusapi"
)

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

// udpOptions are the options of a udp:// endpoint.
var udpOptions = []string{"udp-idle-timeout", "udp-max-flows"}

// optUDP reads the udp-* options into u.
func optUDP(options map[string]dbus.Variant, u *config.UDPFlows) *dbus.Error {
	var derr *dbus.Error
	if u.UDPIdleTimeout, derr = optString(options, "udp-idle-timeout"); derr != nil {
		return derr
	}
	v, ok := options["udp-max-flows"]
	if !ok {
		return nil
	}
	switch n := v.Value().(type) {
	case uint32:
		u.UDPMaxFlows = int(n)
	case int32:
		u.UDPMaxFlows = int(n)
	case string: // connetctl passes every option as a string
		i, err := strconv.Atoi(n)
		if err != nil {
			return invalid("option \"udp-max-flows\": %q is not a number", n)
		}
		u.UDPMaxFlows = i
	default:
		return invalid("option \"udp-max-flows\" must be a number (u, i or s), not %s", v.Signature())
	}
	return nil
}

// AddSource adds a source listening on addr (host:port, or a tcp:// or
// udp:// URL); options: route (s), udp-idle-timeout (s), udp-max-flows
// (u).
func (c *clientAPI) AddSource(sender dbus.Sender, name, addr string, options map[string]dbus.Variant) (dbus.ObjectPath, *dbus.Error) {
	if err := c.s.authorize(sender); err != nil {
		return "", err
	}
	if err := checkOptions(options, append([]string{"route"}, udpOptions...)...); err != nil {
		return "", err
	}
	route, derr := optString(options, "route")
	if derr != nil {
		return "", derr
	}
	s := config.Source{Addr: addr, Route: route}
	config.AddrOrURL(&s.Addr, &s.URL)
	if derr := optUDP(options, &s.UDPFlows); derr != nil {
		return "", derr
	}
	if err := c.s.d.AddSource(name, s); err != nil {
		return "", dbusError(err)
	}
	c.s.sync()
	return dbusapi.EndpointPath("source", name), nil
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

// AddDestination adds a destination forwarding to addr (host:port, or a
// tcp:// or udp:// URL); options: route (s), proxy-proto-version (s),
// file-server-root (s), udp-idle-timeout (s), udp-max-flows (u, i or s).
func (c *clientAPI) AddDestination(sender dbus.Sender, name, addr string, options map[string]dbus.Variant) (dbus.ObjectPath, *dbus.Error) {
	if err := c.s.authorize(sender); err != nil {
		return "", err
	}
	if err := checkOptions(options, append([]string{"route", "proxy-proto-version", "file-server-root"}, udpOptions...)...); err != nil {
		return "", err
	}
	var d config.Destination
	d.Addr = addr
	config.AddrOrURL(&d.Addr, &d.URL)
	if derr := optUDP(options, &d.UDPFlows); derr != nil {
		return "", derr
	}
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
	return dbusapi.EndpointPath("destination", name), nil
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

func (c *clientAPI) list(kind string) []dbusapi.EndpointInfo {
	out := []dbusapi.EndpointInfo{}
	for _, ep := range c.s.d.Endpoints() {
		if ep.Kind == kind {
			out = append(out, dbusapi.EndpointInfo{Name: ep.Name, Address: ep.Addr, Route: ep.Route, Origin: ep.Origin, Path: dbusapi.EndpointPath(kind, ep.Name)})
		}
	}
	return out
}

// ListSources lists the sources.
func (c *clientAPI) ListSources() ([]dbusapi.EndpointInfo, *dbus.Error) { return c.list("source"), nil }

// ListDestinations lists the destinations.
func (c *clientAPI) ListDestinations() ([]dbusapi.EndpointInfo, *dbus.Error) {
	return c.list("destination"), nil
}
