// Package restrict decides which peers may connect and what they may claim:
// allow/deny networks, endpoint-name patterns and roles, as connet's
// ip-restriction and token-restriction tables describe them.
package restrict

import (
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
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
	if t.Names, err = CompileName(nameMatches, false); err != nil {
		return Token{}, fmt.Errorf("name-matches: %w", err)
	}
	switch roleMatches {
	case "", RoleSource, RoleDestination:
		t.Role = roleMatches
	default:
		return Token{}, fmt.Errorf("role-matches: %q is neither %q nor %q", roleMatches, RoleSource, RoleDestination)
	}
	return t, nil
}

// CompileName compiles a name-matches pattern, a Go (RE2) regular
// expression; "" gives nil, any name.
//
// Unanchored, as connet compiles it, the pattern only has to match somewhere
// in the name: "web" accepts "evil-web". That stays the meaning of
// name-matches, so that a connet configuration allows what it allowed
// there; name-matches-anchored asks for the whole name instead. Anchoring
// wraps the parsed expression rather than the text, so "web|api" anchored
// is exactly "web" or "api" (not "^web|api$", which accepts "xapi"), and a
// pattern such as `\Qa.b` cannot swallow the wrapper.
func CompileName(pattern string, anchored bool) (*regexp.Regexp, error) {
	if pattern == "" {
		return nil, nil
	}
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, err
	}
	if anchored {
		pattern = `\A(?:` + re.String() + `)\z`
	}
	return regexp.Compile(pattern)
}

// NameStartAnchored reports whether every match of pattern must begin at
// the start of the name (it starts with ^ or \A on every branch). One that
// need not accepts any name with a matching part, such as "evil-web" for
// "web" or "xapi" for "^web|api"; configuration warns about those. An
// invalid pattern reports true: its error is reported instead.
func NameStartAnchored(pattern string) bool {
	re, err := syntax.Parse(pattern, syntax.Perl)
	return err != nil || startAnchored(re)
}

func startAnchored(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginText:
		return true
	case syntax.OpCapture:
		return startAnchored(re.Sub[0])
	case syntax.OpConcat:
		return len(re.Sub) > 0 && startAnchored(re.Sub[0])
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if !startAnchored(sub) {
				return false
			}
		}
		return true
	}
	return false
}

// AcceptsEndpoint reports whether the token may announce name in role.
func (t Token) AcceptsEndpoint(name, role string) bool {
	if t.Role != "" && t.Role != role {
		return false
	}
	return t.Names == nil || t.Names.MatchString(name)
}
