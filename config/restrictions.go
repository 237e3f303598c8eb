package config

import (
	"fmt"
	"strings"

	"github.com/connetd/connetd/restrict"
)

// partErr reports err at p.key(k). restrict prefixes its errors with the key
// name; the key is already in our message, so the prefix is dropped.
func (v *validator) partErr(p keyPath, k string, err error) bool {
	if err == nil {
		return true
	}
	v.fail(p.key(k), err, "%s", strings.TrimPrefix(err.Error(), k+": "))
	return false
}

func (v *validator) ipRestriction(p keyPath, r IPRestriction) restrict.IP {
	// Parsed one list at a time so the error lands on the right key's line.
	_, errA := restrict.ParseIP(r.AllowCIDRs, nil)
	_, errD := restrict.ParseIP(nil, r.DenyCIDRs)
	okA, okD := v.partErr(p, "allow-cidrs", errA), v.partErr(p, "deny-cidrs", errD)
	if !okA || !okD {
		return restrict.IP{}
	}
	ip, err := restrict.ParseIP(r.AllowCIDRs, r.DenyCIDRs)
	if err != nil {
		v.fail(p, err, "%v", err)
	}
	return ip
}

// tokenRestriction parses one entry; names tells whether its tokens' holders
// announce named endpoints (clients do, relays do not).
func (v *validator) tokenRestriction(p keyPath, r TokenRestriction, names bool) (restrict.Token, bool) {
	_, errA := restrict.ParseToken(r.AllowCIDRs, nil, "", "")
	_, errD := restrict.ParseToken(nil, r.DenyCIDRs, "", "")
	nameRE, errN := restrict.CompileName(r.NameMatches, r.NameMatchesAnchored)
	_, errR := restrict.ParseToken(nil, nil, "", r.RoleMatches)
	ok := v.partErr(p, "allow-cidrs", errA)
	ok = v.partErr(p, "deny-cidrs", errD) && ok
	ok = v.partErr(p, "name-matches", errN) && ok
	ok = v.partErr(p, "role-matches", errR) && ok
	if !ok {
		return restrict.Token{}, false
	}
	t, err := restrict.ParseToken(r.AllowCIDRs, r.DenyCIDRs, "", r.RoleMatches)
	if err != nil {
		v.fail(p, err, "%v", err)
		return restrict.Token{}, false
	}
	t.Names = nameRE
	if names && nameRE != nil && !r.NameMatchesAnchored && !restrict.NameStartAnchored(r.NameMatches) {
		// connet's meaning is kept, so a pattern written as if it had to
		// match the whole name silently allows more; say so.
		v.warn(p.key("name-matches"), "%q is not anchored at the start: as in connet, it allows every name that contains a match "+
			"(\"web\" also allows \"evil-web\"); write \"^...$\", or set name-matches-anchored = true, to match whole names", r.NameMatches)
	}
	return t, true
}

// tokenRestrictions pairs restrictions with tokens by position, which is only
// meaningful when there is exactly one per token.
func (v *validator) tokenRestrictions(p keyPath, rs []TokenRestriction, names bool, toks []string, toksOK bool) []restrict.Token {
	if len(rs) == 0 {
		return nil
	}
	out := make([]restrict.Token, 0, len(rs))
	ok := true
	for i, r := range rs {
		t, rok := v.tokenRestriction(p.at(i), r, names)
		ok = ok && rok
		out = append(out, t)
	}
	if toksOK && len(rs) != len(toks) {
		v.fail(p, nil, "has %s but there %s; when present it needs one entry per token, in token order",
			plural(len(rs), "1 entry", "%d entries"), plural(len(toks), "is 1 token", "are %d tokens"))
		return nil
	}
	if !ok || !toksOK {
		return nil
	}
	return out
}

// plural picks one for n == 1, else formats many with n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf(many, n)
}
