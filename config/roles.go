package config

import (
	"errors"
	"maps"
	"slices"
)

var routes = []string{"any", "direct", "relay"}

func (v *validator) client(c *Client) {
	p := key("client")
	c.TokenValue = v.token(p, c.Token, c.TokenFile)
	c.ServerAddr = v.addrList(p, "server-addr", "server-addrs", c.ServerAddr, c.ServerAddrs, "localhost:19190")
	v.readable(p.key("server-cas"), c.ServerCAs)
	c.DirectAddr = v.addr(p.key("direct-addr"), c.DirectAddr, ":19192")
	c.StatusAddr = v.addr(p.key("status-addr"), c.StatusAddr, "")
	c.MetricsAddr = v.addr(p.key("metrics-addr"), c.MetricsAddr, "")
	c.PortMapping = v.oneOf(p.key("port-mapping"), c.PortMapping, "auto", "auto", "off")

	// Sorted, so that several errors always come out in the same order.
	for _, name := range slices.Sorted(maps.Keys(c.Destinations)) {
		d := c.Destinations[name]
		v.destination(p.key("destinations").key(name), name, &d)
		c.Destinations[name] = d
	}
	for _, name := range slices.Sorted(maps.Keys(c.Sources)) {
		s := c.Sources[name]
		v.source(p.key("sources").key(name), name, &s)
		c.Sources[name] = s
	}
}

func (v *validator) destination(ep keyPath, name string, d *Destination) {
	v.endpointName(ep, name)
	v.endpointKind(ep, true, &d.Addr, &d.URL, &d.Proto, &d.EndpointKind, d.ServerName)
	d.Route = v.oneOf(ep.key("route"), d.Route, "any", routes...)
	d.ProxyProtoVersion = v.oneOf(ep.key("proxy-proto-version"), d.ProxyProtoVersion, "", "v1", "v2")
	d.FileServerRoot = expandPath(d.FileServerRoot)
	if d.Proto == "udp" {
		if d.ProxyProtoVersion != "" {
			v.fail(ep.key("proxy-proto-version"), nil, "PROXY protocol does not apply to udp:// destinations")
		}
		if d.FileServerRoot != "" {
			v.fail(ep.key("file-server-root"), nil, "the file server is for tcp destinations, not udp://")
		}
	}
	v.destinationKind(ep, d)
	v.udpFlows(ep, d.Proto, &d.UDPFlows)
	v.onDemand(ep, d)
}

func (v *validator) source(ep keyPath, name string, s *Source) {
	v.endpointName(ep, name)
	v.endpointKind(ep, false, &s.Addr, &s.URL, &s.Proto, &s.EndpointKind, "")
	s.Route = v.oneOf(ep.key("route"), s.Route, "any", routes...)
	v.udpFlows(ep, s.Proto, &s.UDPFlows)
	v.lb(ep, s.Proto, s.Kind, &s.LB)
}

// CheckSource validates a source defined outside a file (over D-Bus) as the
// file's [client.sources.NAME] would be, and applies the same defaults.
func CheckSource(name string, s *Source) error {
	v := &validator{}
	v.source(key("client", "sources", name), name, s)
	return errors.Join(v.errs...)
}

// CheckDestination is CheckSource for a destination.
func CheckDestination(name string, d *Destination) error {
	v := &validator{}
	v.destination(key("client", "destinations", name), name, d)
	return errors.Join(v.errs...)
}

func (v *validator) server(s *Server) {
	p := key("server")
	s.Addr = v.addr(p.key("addr"), s.Addr, ":19190")
	v.requiredFile(p.key("cert-file"), s.CertFile)
	v.requiredFile(p.key("key-file"), s.KeyFile)

	toks, ok := v.tokenList(p, "tokens", "tokens-file", s.Tokens, s.TokensFile, true)
	s.TokenValues = toks
	s.IPRestrict = v.ipRestriction(p.key("ip-restriction"), s.IPRestriction)
	s.TokenRestricts = v.tokenRestrictions(p.key("token-restriction"), s.TokenRestrictions, true, toks, ok)

	s.RelayAddr = v.addr(p.key("relay-addr"), s.RelayAddr, ":19191")
	s.RelayHostname = v.hostname(p.key("relay-hostname"), s.RelayHostname)
	s.NodeName = v.nodeName(p.key("node-name"), s.NodeName)
	s.StatusAddr = v.addr(p.key("status-addr"), s.StatusAddr, "")
	s.MetricsAddr = v.addr(p.key("metrics-addr"), s.MetricsAddr, "")
	s.StoreDir = storeDir(s.StoreDir)
	v.limits(p, s.Limits)
	v.clusterStore(p, &s.ClusterStore)
}

func (v *validator) control(c *Control) {
	p := key("control")
	v.requiredFile(p.key("cert-file"), c.CertFile)
	v.requiredFile(p.key("key-file"), c.KeyFile)

	c.ClientsAddr = v.addr(p.key("clients-addr"), c.ClientsAddr, ":19190")
	c.NodeName = v.nodeName(p.key("node-name"), c.NodeName)
	toks, ok := v.tokenList(p, "clients-tokens", "clients-tokens-file", c.ClientsTokens, c.ClientsTokensFile, true)
	c.ClientsTokenValues = toks
	c.ClientsIPRestrict = v.ipRestriction(p.key("clients-ip-restriction"), c.ClientsIPRestriction)
	c.ClientsTokenRestricts = v.tokenRestrictions(p.key("clients-token-restriction"), c.ClientsTokenRestrictions, true, toks, ok)

	// Relay tokens are optional: without them the control server simply
	// accepts no relays.
	c.RelaysAddr = v.addr(p.key("relays-addr"), c.RelaysAddr, ":19189")
	toks, ok = v.tokenList(p, "relays-tokens", "relays-tokens-file", c.RelaysTokens, c.RelaysTokensFile, false)
	c.RelaysTokenValues = toks
	c.RelaysIPRestrict = v.ipRestriction(p.key("relays-ip-restriction"), c.RelaysIPRestriction)
	c.RelaysTokenRestricts = v.tokenRestrictions(p.key("relays-token-ip-restriction"), c.RelaysTokenRestrictions, false, toks, ok)

	c.StatusAddr = v.addr(p.key("status-addr"), c.StatusAddr, "")
	c.MetricsAddr = v.addr(p.key("metrics-addr"), c.MetricsAddr, "")
	c.StoreDir = storeDir(c.StoreDir)
	v.limits(p, c.Limits)
	v.clusterStore(p, &c.ClusterStore)
}

// limits checks the limit keys of a [server] or [control] table; their
// defaults are control's, applied there.
func (v *validator) limits(p keyPath, l Limits) {
	for _, k := range []struct {
		name string
		val  int
	}{
		{"max-sessions-per-token", l.MaxSessionsPerToken},
		{"max-endpoints-per-client", l.MaxEndpointsPerClient},
		{"max-peers-per-endpoint", l.MaxPeersPerEndpoint},
		{"max-punches-per-minute", l.MaxPunchesPerMinute},
	} {
		if k.val < 0 {
			v.fail(p.key(k.name), nil, "%d is negative: give a positive number, or 0 for the default", k.val)
		}
	}
}

func (v *validator) relay(r *Relay) {
	p := key("relay")
	r.TokenValue = v.token(p, r.Token, r.TokenFile)
	r.Addr = v.addr(p.key("addr"), r.Addr, ":19191")
	r.Hostname = v.hostname(p.key("hostname"), r.Hostname)
	r.ControlAddr = v.addrList(p, "control-addr", "control-addrs", r.ControlAddr, r.ControlAddrs, "localhost:19190")
	v.readable(p.key("control-cas"), r.ControlCAs)
	r.StatusAddr = v.addr(p.key("status-addr"), r.StatusAddr, "")
	r.MetricsAddr = v.addr(p.key("metrics-addr"), r.MetricsAddr, "")
	r.StoreDir = storeDir(r.StoreDir)
}
