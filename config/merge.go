package config

import (
	"bytes"
	"errors"
	"os"

	"github.com/BurntSushi/toml"
)

// Several --config files are merged in order, as connet does: a later file
// overrides the keys it sets, tables merge key by key, and an array (of
// values or of tables) is replaced as a whole. Errors still name the file
// and line a key came from.

// LoadFiles is Load for several files merged in order.
func LoadFiles(paths ...string) (*File, error) {
	f, lines, err := decodeFiles(paths)
	if err != nil {
		return nil, err
	}
	if err := validate(f, origin{file: f.Path, lines: lines}); err != nil {
		return nil, err
	}
	return f, nil
}

// CheckFiles is what connetd check runs: the files are decoded, merged and
// validated without starting anything. It returns every problem, and the
// warnings, those of the daemon and those about risky settings.
func CheckFiles(paths ...string) (warnings []*Error, problems []error) {
	f, lines, err := decodeFiles(paths)
	if err != nil {
		return nil, splitErrors(err)
	}
	err = validate(f, origin{file: f.Path, lines: lines, risky: true})
	return f.Warnings, splitErrors(err)
}

func splitErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// decodeFiles decodes and merges; one file is decoded as before.
func decodeFiles(paths []string) (*File, *node, error) {
	switch len(paths) {
	case 0:
		return &File{}, nil, nil
	case 1:
		return decodeFile(paths[0])
	}
	var (
		errs   []error
		merged = map[string]any{}
		layout = &node{}
	)
	for _, path := range paths {
		// Each file alone first, for its unknown keys and wrong types.
		_, lines, err := decodeFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, &Error{File: path, Msg: err.Error(), Err: err})
			continue
		}
		var m map[string]any
		if _, err := toml.Decode(string(data), &m); err != nil {
			errs = append(errs, decodeError(path, string(data), err))
			continue
		}
		stamp(lines, path)
		mergeTable(merged, m, layout, lines, nil)
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(merged); err != nil {
		return nil, nil, &Error{File: paths[len(paths)-1], Msg: "merging the files: " + err.Error(), Err: err}
	}
	var f File
	if _, err := toml.Decode(buf.String(), &f); err != nil {
		// Each file decoded alone, so only a clash between files is left,
		// e.g. a key that is a table in one and a value in another.
		return nil, nil, &Error{File: paths[len(paths)-1], Msg: "the files do not merge: " + err.Error(), Err: err}
	}
	f.Path = paths[0]
	return &f, layout, nil
}

func stamp(n *node, file string) {
	if n == nil {
		return
	}
	n.file = file
	for _, c := range n.keys {
		stamp(c, file)
	}
	for _, e := range n.elems {
		stamp(e, file)
	}
}

// overrideGroups are keys that set one thing together: a later file setting
// any of them removes the others an earlier file set (token and token-file,
// as in connet; a v0.5 key and its v0.15 form).
var overrideGroups = [][]string{
	{"token", "token-file"},
	{"tokens", "tokens-file"},
	{"clients-tokens", "clients-tokens-file"},
	{"relays-tokens", "relays-tokens-file"},
	{"server-cas", "server-cas-file"},
	{"control-cas", "control-cas-file"},
	{"port-mapping", "nat-pmp"},
	{"direct-stateless-reset-key", "direct-stateless-reset-key-file"},
	{"relays-token-ip-restriction", "relays-token-restriction"},
	{"addr", "url"},
}

func mergeTable(dst, src map[string]any, dl, sl *node, path []string) {
	for _, g := range overrideGroups {
		later := false
		for _, k := range g {
			_, ok := src[k]
			later = later || ok
		}
		if !later {
			continue
		}
		for _, k := range g {
			if _, ok := src[k]; !ok {
				delete(dst, k)
				if dl != nil {
					delete(dl.keys, k)
				}
			}
		}
	}
	for k, sv := range src {
		var sc *node
		if sl != nil {
			sc = sl.keys[k]
		}
		st, sIsTable := sv.(map[string]any)
		dt, dIsTable := dst[k].(map[string]any)
		if sIsTable && dIsTable {
			dc := dl.child(k, 0)
			if dc.line == 0 && sc != nil {
				dc.line, dc.file = sc.line, sc.file
			}
			mergeTable(dt, st, dc, sc, append(path, k))
			continue
		}
		dst[k] = sv
		if sc != nil {
			if dl.keys == nil {
				dl.keys = map[string]*node{}
			}
			dl.keys[k] = sc
		}
	}
}
