// Package ctladdr is the ordered list of control addresses a client or a
// relay fails over between.
package ctladdr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Split parses a server-addr value: one address, or several separated by
// commas. Blanks around each are dropped; empty items are kept as "" so
// that validation can name them.
func Split(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}

// Target is one concrete address to dial.
type Target struct {
	Entry string         // as configured, host:port
	Addr  netip.AddrPort // what Entry resolved to
}

// Host is the host part of Entry: the TLS server name when none is set.
func (t Target) Host() string {
	h, _, _ := net.SplitHostPort(t.Entry)
	return h
}

// UDPAddr is Addr for dialing.
func (t Target) UDPAddr() *net.UDPAddr { return net.UDPAddrFromAddrPort(t.Addr) }

// Resolver returns a host's addresses; net.DefaultResolver.LookupNetIP
// with network "ip" is the usual one.
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// DefaultResolver asks the system resolver for A and AAAA records.
func DefaultResolver(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// Expand resolves every entry in order. A name with several A/AAAA records
// gives several targets, so that a round-robin DNS name of a control
// cluster fails over like a list. An entry that does not resolve is left
// out; the error names every such entry when none resolves. resolve nil
// means DefaultResolver.
func Expand(ctx context.Context, entries []string, resolve Resolver) ([]Target, error) {
	if resolve == nil {
		resolve = DefaultResolver
	}
	var out []Target
	var errs []error
	for _, e := range entries {
		host, portStr, err := net.SplitHostPort(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("control address %q: %w", e, err))
			continue
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			errs = append(errs, fmt.Errorf("control address %q: port %q is not a number", e, portStr))
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			out = append(out, Target{Entry: e, Addr: netip.AddrPortFrom(ip.Unmap(), uint16(port))})
			continue
		}
		if host == "" {
			host = "localhost"
		}
		ips, err := resolve(ctx, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve control %s: %w", e, err))
			continue
		}
		for _, ip := range ips {
			out = append(out, Target{Entry: e, Addr: netip.AddrPortFrom(ip.Unmap(), uint16(port))})
		}
	}
	if len(out) == 0 {
		if len(errs) == 0 {
			return nil, errors.New("no control address")
		}
		return nil, errors.Join(errs...)
	}
	return out, nil
}
