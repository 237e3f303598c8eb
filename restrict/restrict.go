// Package restrict decides which peers may connect and what they may claim:
// allow/deny networks, endpoint-name patterns and roles, as connet's
// ip-restriction and token-restriction tables describe them.
package restrict

import (
	"fmt"
	"net/netip"
	"regexp"
)

// IP rejects an address that is in any Deny network, or in none of the Allow
// networks when Allow is not empty.
type IP struct {
	Allow []netip.Prefix
	Deny  []netip.Prefix
}

// ParseIP parses CIDR lists; the error names the offending entry.
func ParseIP(allow, deny []string) (IP, error) {
	var r IP
	var err error
	if r.Allow, err = parsePrefixes(allow); err != nil {
		return IP{}, fmt.Errorf("allow-cidrs: %w", err)
	}
	if r.Deny, err = parsePrefixes(deny); err != nil {
		return IP{}, fmt.Errorf("deny-cidrs: %w", err)
	}
	return r, nil
}

func parsePrefixes(in []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network in CIDR form: %w", s, err)
		}
		// An IPv4-mapped network (::ffff:a.b.c.d/n) is the IPv4 network
		// a.b.c.d/(n-96): addresses are compared unmapped.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Accepts reports whether addr may connect.
func (r IP) Accepts(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range r.Deny {
		if p.Contains(addr) {
			return false
		}
	}
	if len(r.Allow) == 0 {
		return true
	}
	for _, p := range r.Allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Roles a client endpoint can take.
const (
	RoleSource      = "source"
	RoleDestination = "destination"
)

// Token restricts what the holder of one token may do.
type Token struct {
	IP    IP
	Names *regexp.Regexp // nil: any name
	Role  string         // "": any role
}

// ParseToken builds a Token restriction from its config values.
func ParseToken(allow, deny []string, nameMatches, roleMatches string) (Token, error) {
	ip, err := ParseIP(allow, deny)
	if err != nil {
		return Token{}, err
	}
	t := Token{IP: ip}
	if nameMatches != "" {
		if t.Names, err = regexp.Compile(nameMatches); err != nil {
			return Token{}, fmt.Errorf("name-matches: %w", err)
		}
	}
	switch roleMatches {
	case "", RoleSource, RoleDestination:
		t.Role = roleMatches
	default:
		return Token{}, fmt.Errorf("role-matches: %q is neither %q nor %q", roleMatches, RoleSource, RoleDestination)
	}
	return t, nil
}

// AcceptsEndpoint reports whether the token may announce name in role.
func (t Token) AcceptsEndpoint(name, role string) bool {
	if t.Role != "" && t.Role != role {
		return false
	}
	return t.Names == nil || t.Names.MatchString(name)
}
