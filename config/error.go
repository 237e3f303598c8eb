package config

import (
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is one configuration problem, located where a person would go to fix
// it: a line of a file, or a command-line flag.
//
// It prints as "FILE:LINE: KEY: MSG"; parts that are unknown are left out,
// so a value that came from a flag prints as "flag --route: MSG".
type Error struct {
	File string // "" when the value did not come from a file
	Line int    // 1-based; 0 when unknown
	Key  string // e.g. client.destinations.web.route, or "flag --route"
	Msg  string
	Err  error // underlying cause, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(oneLine.Replace(e.Key))
		b.WriteString(": ")
	}
	b.WriteString(oneLine.Replace(e.Msg))
	return b.String()
}

// oneLine keeps each error on one line, so that several joined errors can be
// told apart and each starts with its file name.
var oneLine = strings.NewReplacer("\n", "\\n", "\r", "\\r")

func (e *Error) Unwrap() error { return e.Err }

// keyPath names a value inside the config. An element with index >= 0 selects
// an entry of an array of tables, which TOML keys alone cannot express.
type keyPath []step

type step struct {
	name  string
	index int
}

func key(names ...string) keyPath {
	var p keyPath
	for _, n := range names {
		p = p.key(n)
	}
	return p
}

// key and at copy, so that paths derived from one parent never share storage.
func (p keyPath) key(name string) keyPath {
	return append(p[:len(p):len(p)], step{name: name, index: -1})
}

func (p keyPath) at(i int) keyPath {
	return append(p[:len(p):len(p)], step{index: i})
}

// String formats the path the way it would be written in TOML, quoting names
// that are not bare keys, with [i] for array entries.
func (p keyPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if s.index >= 0 {
			fmt.Fprintf(&b, "[%d]", s.index)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(toml.Key{s.name}.String())
	}
	return b.String()
}
