package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// endpointProtos are the URL schemes a source or destination may use.
var endpointProtos = []string{"tcp", "udp"}

// endpointAddr resolves an endpoint's addr or url key into *addr (host:port)
// and *proto ("" for tcp, or "udp"), and clears *rawURL, so that a validated endpoint validates
// again to the same thing (run-time endpoints are checked, stored and
// compared in that form).
func (v *validator) endpointAddr(ep keyPath, addr, rawURL, proto *string) {
	switch {
	case *addr != "" && *rawURL != "":
		v.fail(ep.key("url"), nil, "set addr or url, not both")
		return
	case *rawURL != "":
		scheme, hostport, err := parseEndpointURL(*rawURL)
		if err != nil {
			v.fail(ep.key("url"), err, "%q: %v", *rawURL, err)
			return
		}
		if err := checkAddr(hostport); err != nil {
			v.fail(ep.key("url"), err, "%q: %q is not a host:port address (%v)", *rawURL, hostport, err)
			return
		}
		*addr, *rawURL, *proto = hostport, "", scheme
		if scheme == "tcp" {
			*proto = "" // tcp is the default, as with addr
		}
	case *addr != "":
		*addr = v.addr(ep.key("addr"), *addr, "")
	default:
		v.fail(ep.key("addr"), nil, "required but not set (set addr, or url)")
	}
}

// parseEndpointURL splits "udp://host:port" into its scheme and host:port;
// anything beyond them (a path, a query, a user) is an error rather than
// ignored.
func parseEndpointURL(raw string) (scheme, hostport string, err error) {
	const form = "want SCHEME://HOST:PORT, e.g. udp://127.0.0.1:53"
	if !strings.Contains(raw, "://") {
		return "", "", errors.New(form)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme == "" || u.Opaque != "" || u.Host == "" {
		return "", "", errors.New(form)
	}
	known := false
	for _, p := range endpointProtos {
		known = known || u.Scheme == p
	}
	if !known {
		return "", "", fmt.Errorf("scheme %q is not one of tcp, udp", u.Scheme)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("a %s:// endpoint takes only a host and a port", u.Scheme)
	}
	return u.Scheme, u.Host, nil
}

// udpFlows checks the udp-* keys: only a udp endpoint has flows.
func (v *validator) udpFlows(ep keyPath, proto string, u *UDPFlows) {
	if proto != "udp" {
		for k, set := range map[string]bool{"udp-idle-timeout": u.UDPIdleTimeout != "", "udp-max-flows": u.UDPMaxFlows != 0} {
			if set {
				v.fail(ep.key(k), nil, "applies only to udp:// endpoints")
			}
		}
		return
	}
	if u.UDPIdleTimeout != "" {
		d, err := time.ParseDuration(u.UDPIdleTimeout)
		if err != nil || d <= 0 {
			v.fail(ep.key("udp-idle-timeout"), err, "%q is not a positive duration such as \"60s\"", u.UDPIdleTimeout)
		}
		u.UDPIdle = d
	}
	if u.UDPMaxFlows < 0 {
		v.fail(ep.key("udp-max-flows"), nil, "%d is not a positive number of flows", u.UDPMaxFlows)
	}
}

// AddrOrURL puts an address given where either form is taken (a flag,
// connetctl, D-Bus) into the key it belongs to: a value with a scheme is
// a url. It returns that key's name.
func AddrOrURL(addr, rawURL *string) string {
	if strings.Contains(*addr, "://") {
		*rawURL, *addr = *addr, ""
		return "url"
	}
	return "addr"
}
