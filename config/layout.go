package config

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// node records on which line each key of a TOML document is defined. The
// toml package does not expose key positions, so error messages for values
// that decoded fine (unknown keys, validation) rely on this small scanner.
type node struct {
	line  int
	keys  map[string]*node
	elems []*node // entries of an array of tables, or of an array of inline tables
	file  string  // set when several files were merged: the one this came from
}

func (n *node) child(name string, line int) *node {
	if n.keys == nil {
		n.keys = map[string]*node{}
	}
	c := n.keys[name]
	if c == nil {
		c = &node{line: line}
		n.keys[name] = c
	}
	return c
}

// lineOf returns the line of the deepest part of p that exists, so a missing
// key is reported at its table's header. 0 means not even the table exists.
func (n *node) lineOf(p keyPath) int {
	_, line := n.fileLineOf(p)
	return line
}

// fileLineOf is lineOf with the file of that line, "" when the layout is of
// one file only.
func (n *node) fileLineOf(p keyPath) (file string, line int) {
	for _, s := range p {
		if n == nil {
			break
		}
		if s.index >= 0 {
			if s.index >= len(n.elems) {
				break
			}
			n = n.elems[s.index]
		} else {
			n = n.keys[s.name]
		}
		if n != nil && n.line > 0 {
			file, line = n.file, n.line
		}
	}
	return file, line
}

// lineOfKey is lineOf for keys reported by the toml package, which carry no
// array indexes: the first array entry holding the rest of the key wins.
func (n *node) lineOfKey(k toml.Key) int {
	if n == nil || len(k) == 0 {
		return 0
	}
	if c := n.keys[k[0]]; c != nil {
		if l := c.lineOfKey(k[1:]); l > 0 {
			return l
		}
		return c.line
	}
	for _, e := range n.elems {
		if e.keys[k[0]] != nil {
			return e.lineOfKey(k)
		}
	}
	return 0
}

// scanLayout maps the keys of a TOML document to their lines. It is meant for
// documents the toml package has accepted; on anything else it still
// terminates and returns whatever it made sense of.
func scanLayout(src string) *node {
	// The decoder accepts a leading byte order mark; so must the scanner, or
	// it would lose the first line.
	s := &scanner{src: strings.TrimPrefix(src, "\ufeff"), line: 1}
	root := &node{}
	table := root
	for {
		s.skipBlank()
		if s.eof() {
			return root
		}
		start := s.pos
		switch {
		case strings.HasPrefix(s.src[s.pos:], "[["):
			s.pos += 2
			line := s.line
			k := s.key()
			parent := root.walk(k[:max(len(k)-1, 0)], line)
			if len(k) > 0 {
				arr := parent.child(k[len(k)-1], line)
				elem := &node{line: line}
				arr.elems = append(arr.elems, elem)
				table = elem
			}
		case s.peek() == '[':
			s.pos++
			line := s.line
			k := s.key()
			table = root.walk(k, line)
			if len(k) > 0 {
				// An explicit header beats a line where the table was only
				// implied by a deeper header.
				table.line = line
			}
		default:
			s.keyval(table)
		}
		s.skipLine()
		if s.pos == start {
			s.pos++
		}
	}
}

// walk follows a header's key, creating tables as needed; like TOML itself it
// steps into the last entry of an array of tables.
func (n *node) walk(k []string, line int) *node {
	for _, name := range k {
		n = n.child(name, line)
		if len(n.elems) > 0 {
			n = n.elems[len(n.elems)-1]
		}
	}
	return n
}

type scanner struct {
	src  string
	pos  int
	line int
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

func (s *scanner) advance() {
	if s.src[s.pos] == '\n' {
		s.line++
	}
	s.pos++
}

func (s *scanner) skipSpace() {
	for !s.eof() && (s.peek() == ' ' || s.peek() == '\t') {
		s.pos++
	}
}

// skipBlank skips whitespace, newlines and comments.
func (s *scanner) skipBlank() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.advance()
		case '#':
			s.skipComment()
		default:
			return
		}
	}
}

func (s *scanner) skipComment() {
	for !s.eof() && s.peek() != '\n' {
		s.pos++
	}
}

// skipLine drops the rest of a statement's line, which in valid TOML holds
// at most a comment (or, after a local date-time, its time part).
func (s *scanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		s.pos++
	}
}

// key reads a possibly dotted key and the closing brackets of a header.
func (s *scanner) key() []string {
	var parts []string
	for {
		s.skipSpace()
		part, ok := s.keyPart()
		if !ok {
			break
		}
		parts = append(parts, part)
		s.skipSpace()
		if s.peek() != '.' {
			break
		}
		s.pos++
	}
	return parts
}

func (s *scanner) keyPart() (string, bool) {
	switch s.peek() {
	case '"':
		return s.basicString(), true
	case '\'':
		return s.literalString(), true
	}
	start := s.pos
	for !s.eof() && isBareKeyByte(s.peek()) {
		s.pos++
	}
	return s.src[start:s.pos], s.pos > start
}

func isBareKeyByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// keyval records "a.b = value" under table and skips over the value.
func (s *scanner) keyval(table *node) {
	line := s.line
	k := s.key()
	s.skipSpace()
	if len(k) == 0 || s.peek() != '=' {
		return
	}
	s.pos++
	n := table
	for _, name := range k {
		n = n.child(name, line)
	}
	s.value(n)
}

func (s *scanner) value(n *node) {
	s.skipSpace()
	switch {
	case strings.HasPrefix(s.src[s.pos:], `"""`):
		s.multiline(`"""`, true)
	case strings.HasPrefix(s.src[s.pos:], `'''`):
		s.multiline(`'''`, false)
	case s.peek() == '"':
		s.basicString()
	case s.peek() == '\'':
		s.literalString()
	case s.peek() == '[':
		s.array(n)
	case s.peek() == '{':
		s.inlineTable(n)
	default:
		for !s.eof() && !strings.ContainsRune(" \t\r\n,]}#", rune(s.peek())) {
			s.pos++
		}
	}
}

func (s *scanner) array(n *node) {
	s.pos++ // [
	for {
		s.skipBlank()
		if s.eof() {
			return
		}
		switch s.peek() {
		case ']':
			s.pos++
			return
		case ',':
			s.pos++
			continue
		case '{':
			e := &node{line: s.line}
			n.elems = append(n.elems, e)
			s.inlineTable(e)
			continue
		}
		start := s.pos
		s.value(&node{})
		if s.pos == start {
			s.advance()
		}
	}
}

func (s *scanner) inlineTable(n *node) {
	s.pos++ // {
	for {
		s.skipBlank()
		if s.eof() {
			return
		}
		switch s.peek() {
		case '}':
			s.pos++
			return
		case ',':
			s.pos++
			continue
		}
		start := s.pos
		s.keyval(n)
		if s.pos == start {
			s.advance()
		}
	}
}

func (s *scanner) multiline(delim string, escapes bool) {
	s.pos += len(delim)
	for !s.eof() {
		if escapes && s.peek() == '\\' {
			s.pos++
			if !s.eof() {
				s.advance()
			}
			continue
		}
		if strings.HasPrefix(s.src[s.pos:], delim) {
			s.pos += len(delim)
			// Up to two quotes may sit right before the closing delimiter.
			for i := 0; i < 2 && !s.eof() && s.peek() == delim[0]; i++ {
				s.pos++
			}
			return
		}
		s.advance()
	}
}

func (s *scanner) literalString() string {
	s.pos++ // '
	start := s.pos
	for !s.eof() && s.peek() != '\'' && s.peek() != '\n' {
		s.pos++
	}
	v := s.src[start:s.pos]
	if s.peek() == '\'' {
		s.pos++
	}
	return v
}

// basicString reads a "..." string and returns it unescaped, because quoted
// keys are compared with the unescaped keys the toml package reports.
func (s *scanner) basicString() string {
	s.pos++ // "
	var b strings.Builder
	for !s.eof() {
		c := s.peek()
		switch c {
		case '"':
			s.pos++
			return b.String()
		case '\n':
			return b.String()
		case '\\':
			s.pos++
			s.escape(&b)
		default:
			b.WriteByte(c)
			s.pos++
		}
	}
	return b.String()
}

func (s *scanner) escape(b *strings.Builder) {
	if s.eof() {
		return
	}
	c := s.peek()
	s.pos++
	const from, to = "btnfre\"\\", "\b\t\n\f\r\x1b\"\\"
	if i := strings.IndexByte(from, c); i >= 0 {
		b.WriteByte(to[i])
		return
	}
	digits := 0
	switch c {
	case 'x':
		digits = 2
	case 'u':
		digits = 4
	case 'U':
		digits = 8
	}
	if digits == 0 || s.pos+digits > len(s.src) {
		return
	}
	v, err := strconv.ParseUint(s.src[s.pos:s.pos+digits], 16, 32)
	if err != nil {
		return
	}
	s.pos += digits
	if r := rune(v); utf8.ValidRune(r) {
		b.WriteRune(r)
	}
}
