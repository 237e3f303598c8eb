package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
)

// ParseCommandLine reads "connetd [ROLE] [--config FILE] [flags...]"; args
// excludes the program name. Without ROLE the role is the file's one role
// table, or client when there is no file (as with connet). Flags override
// the file; the result is validated.
//
// -h/--help returns an error that wraps flag.ErrHelp and whose text is the
// usage of the role.
func ParseCommandLine(args []string) (*File, error) {
	role := ""
	if len(args) > 0 && slices.Contains(roleNames, args[0]) {
		role, args = args[0], args[1:]
	}
	bare := role == ""

	paths := configFlag(args)
	f, lines, err := decodeFiles(paths)
	if err != nil {
		return nil, err
	}
	path := f.Path
	o := origin{file: path, lines: lines, cli: true}
	role, err = pickRole(f, role, o)
	if err != nil {
		return nil, err
	}

	fs := newFlagSet(role, role)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage := Usage(role)
			if bare && path == "" {
				// Plain "connetd -h": the client is only the default role.
				usage = Usage("") + "\n" + usage
			}
			return nil, &helpError{usage: usage}
		}
		return nil, fmt.Errorf("connetd %s: %w (see connetd %s --help)", role, err, role)
	}
	if fs.NArg() > 0 {
		hint := ""
		if slices.Contains(roleNames, fs.Arg(0)) {
			hint = "; the role must come before the flags"
		}
		return nil, fmt.Errorf("connetd %s: unexpected argument %q%s", role, fs.Arg(0), hint)
	}

	if o.flags, err = applyFlags(f, role, fs); err != nil {
		return nil, err
	}
	if err := validate(f, o); err != nil {
		return nil, err
	}
	return f, nil
}

type helpError struct{ usage string }

func (e *helpError) Error() string { return e.usage }
func (e *helpError) Unwrap() error { return flag.ErrHelp }

// newFlagSet registers the flags of roles; every flag takes a value, so a set
// for all roles splits arguments exactly as the set for any one role does.
func newFlagSet(name string, roles ...string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help is Usage
	fs.Usage = func() {}
	seen := map[string]bool{}
	for _, defs := range append([][]flagDef{commonFlags}, rolesFlags(roles)...) {
		for _, d := range defs {
			if seen[d.name] {
				continue
			}
			seen[d.name] = true
			switch {
			case d.name == "config":
				fs.Var(&pathsFlag{}, d.name, d.usage)
			case d.list:
				fs.Var(&listFlag{}, d.name, d.usage)
			case d.bool:
				fs.Var(&boolFlag{}, d.name, d.usage)
			default:
				fs.String(d.name, "", d.usage)
			}
		}
	}
	return fs
}

func rolesFlags(roles []string) [][]flagDef {
	var out [][]flagDef
	for _, r := range roles {
		out = append(out, roleFlags[r])
	}
	return out
}

// configFlag finds --config before the role is known, because without a role
// on the command line the file decides which flags exist.
func configFlag(args []string) []string {
	fs := newFlagSet("connetd", roleNames...)
	_ = fs.Parse(args) // real errors are reported by the role's own parse
	return fs.Lookup("config").Value.(*pathsFlag).paths
}

// pathsFlag collects repeated --config FILE, in order; unlike listFlag it
// does not split at commas, which may be part of a file name.
type pathsFlag struct{ paths []string }

func (p *pathsFlag) String() string {
	if p == nil || len(p.paths) == 0 {
		return ""
	}
	return p.paths[len(p.paths)-1]
}

func (p *pathsFlag) Set(s string) error {
	p.paths = append(p.paths, s)
	return nil
}

func pickRole(f *File, role string, o origin) (string, error) {
	tables := f.roleTables()
	if len(tables) > 1 {
		return "", (&validator{o: o}).roleTable(f)
	}
	if len(tables) == 0 {
		if role == "" {
			role = "client"
		}
		return role, nil
	}
	if role != "" && role != tables[0] {
		file, line, k := o.locate(key(tables[0]))
		return "", &Error{File: file, Line: line, Key: k,
			Msg: fmt.Sprintf("the file configures the %s role, but the command line asks for %s", tables[0], role)}
	}
	return tables[0], nil
}
