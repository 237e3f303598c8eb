package config

import (
	"errors"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads, decodes and validates a configuration file. Every error names
// the file and, where one exists, the line and key to fix.
func Load(path string) (*File, error) {
	f, lines, err := decodeFile(path)
	if err != nil {
		return nil, err
	}
	if err := validate(f, origin{file: path, lines: lines}); err != nil {
		return nil, err
	}
	return f, nil
}

// decodeFile decodes without validating, because command-line flags may
// still supply what the file leaves out.
func decodeFile(path string) (*File, *node, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			msg = pe.Err.Error() // the path is already at the front
		}
		return nil, nil, &Error{File: path, Msg: msg, Err: err}
	}
	f, lines, err := decode(path, string(data))
	if err != nil {
		return nil, nil, err
	}
	return f, lines, nil
}

func decode(path, data string) (*File, *node, error) {
	var f File
	md, err := toml.Decode(data, &f)
	if err != nil {
		return nil, nil, decodeError(path, data, err)
	}
	lines := scanLayout(data)
	undecoded := md.Undecoded()
	unknown := map[string]bool{}
	for _, k := range undecoded {
		unknown[k.String()] = true
	}
	var errs []error
	for _, k := range undecoded {
		if hasUnknownParent(k, unknown) {
			continue // reported once, at the unknown table
		}
		errs = append(errs, &Error{File: path, Line: lines.lineOfKey(k), Key: k.String(), Msg: "unknown key"})
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	f.Path = path
	return &f, lines, nil
}

func hasUnknownParent(k toml.Key, unknown map[string]bool) bool {
	for i := 1; i < len(k); i++ {
		if unknown[k[:i].String()] {
			return true
		}
	}
	return false
}

// The toml package reports type mismatches as plain errors whose only
// structure is this prefix.
var typeErrRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): ((?s).*)$`)

func decodeError(path, data string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: path, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message, Err: err}
	}
	m := typeErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: path, Msg: strings.TrimPrefix(err.Error(), "toml: "), Err: err}
	}
	line, _ := strconv.Atoi(m[1])
	k, uerr := strconv.Unquote(m[2])
	if uerr != nil {
		k = m[2]
	}
	if line == 0 {
		line = scanLayout(data).lineOfKey(splitKey(k))
	}
	return &Error{File: path, Line: line, Key: k, Msg: typeMessage(m[3]), Err: err}
}

// splitKey undoes toml.Key.String well enough to look the key up again.
func splitKey(s string) toml.Key {
	sc := &scanner{src: s, line: 1}
	return sc.key()
}

var (
	incompatibleRE = regexp.MustCompile(`^incompatible types: TOML value has type (.+); destination has type (.+)$`)
	notTableRE     = regexp.MustCompile(`^type mismatch for .+: expected table but found (.+)$`)
)

func typeMessage(msg string) string {
	if m := incompatibleRE.FindStringSubmatch(msg); m != nil {
		return "expected " + tomlType(m[2]) + ", found " + tomlType(m[1])
	}
	if m := notTableRE.FindStringSubmatch(msg); m != nil {
		return "expected a table, found " + tomlType(m[1])
	}
	return msg
}

// tomlType turns Go type names from the toml package into TOML's own terms.
func tomlType(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "int64", "integer":
		return "an integer"
	case "float64", "float":
		return "a float"
	case "bool", "boolean":
		return "a boolean"
	case "[]any", "[]interface {}", "slice":
		return "an array"
	case "map[string]any", "map[string]interface {}", "map":
		return "a table"
	case "[]map[string]any", "[]map[string]interface {}":
		return "an array of tables"
	case "time.Time", "toml.LocalDate", "toml.LocalTime", "toml.LocalDatetime":
		return "a date-time"
	}
	return goType
}
