package config

import (
	"os"
	"strings"
	"unicode"

	"github.com/connetd/connetd/internal/ctladdr"
)

// addrList validates a control address key that takes one address or a
// comma-separated list (key), or an array (listKey), and returns the list
// comma-separated; def when neither is set.
func (v *validator) addrList(p keyPath, key, listKey, val string, list []string, def string) string {
	if val != "" && len(list) > 0 {
		v.fail(p.key(listKey), nil, "%s and %s are both set: give the addresses in one of them", key, listKey)
		return val
	}
	at := func(int) keyPath { return p.key(key) }
	items := ctladdr.Split(val)
	if len(list) > 0 {
		at = func(i int) keyPath { return p.key(listKey).at(i) }
		items = list
	}
	if len(items) == 0 {
		return def
	}
	seen := map[string]bool{}
	for i, a := range items {
		a = strings.TrimSpace(a)
		items[i] = a
		switch {
		case a == "":
			v.fail(at(i), nil, "address %d of the list is empty", i+1)
		case seen[a]:
			v.fail(at(i), nil, "%q is listed twice", a)
		default:
			if err := checkAddr(a); err != nil {
				v.fail(at(i), err, "%q is not a host:port address (%v)", a, err)
			}
		}
		seen[a] = true
	}
	return strings.Join(items, ",")
}

// nodeName defaults to the hostname: one control node per host is the
// usual cluster.
func (v *validator) nodeName(p keyPath, val string) string {
	if val == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return "control"
		}
		return h
	}
	if strings.ContainsFunc(val, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) || len(val) > 64 {
		v.fail(p, nil, "%q is not a node name: up to 64 printable characters, no blanks", val)
	}
	return val
}

// ControlAddrs splits a validated ServerAddr or ControlAddr into its
// addresses.
func ControlAddrs(s string) []string { return ctladdr.Split(s) }
