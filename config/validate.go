package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// Validate checks f, applies defaults and fills the resolved fields (token
// values, parsed restrictions). Token files are read here, so that a bad path
// is reported at startup with the key that names it.
//
// Without the file's text at hand Validate cannot know line numbers; Load
// reports the same errors with lines.
func (f *File) Validate() error {
	return validate(f, origin{file: f.Path})
}

// origin tells where values came from, so errors point at what to fix.
type origin struct {
	file  string
	lines *node             // nil when the text of the file is not known
	flags map[string]string // keyPath.String() -> name of the flag that set it
	cli   bool              // on the command line, keys nobody set are named as flags
	// alias maps a key set from connet v0.15's form to the key that set
	// it (server.addr -> server.ingress[0].addr), so errors point there.
	alias map[string]keyPath
	// risky adds the warnings that only connetd check gives.
	risky bool
}

func (o origin) locate(p keyPath) (file string, line int, key string) {
	if name, ok := o.flags[p.String()]; ok {
		return "", 0, "flag --" + name
	}
	if o.cli && o.file == "" && len(p) > 0 && len(p) <= 2 {
		// Flags carry the names of the role table's keys.
		return "", 0, "flag --" + p[len(p)-1].name
	}
	for i := len(p); i > 0; i-- {
		if a, ok := o.alias[p[:i].String()]; ok {
			p = append(a[:len(a):len(a)], p[i:]...)
			break
		}
	}
	file, line = o.lines.fileLineOf(p)
	if file == "" {
		file = o.file
	}
	return file, line, p.String()
}

type validator struct {
	o     origin
	errs  []error
	warns []*Error
	notes []*Error
}

func (v *validator) fail(p keyPath, cause error, format string, args ...any) {
	file, line, k := v.o.locate(p)
	v.errs = append(v.errs, &Error{File: file, Line: line, Key: k, Msg: fmt.Sprintf(format, args...), Err: cause})
}

// warn records what loads but is unsafe or likely not meant.
func (v *validator) warn(p keyPath, format string, args ...any) {
	file, line, k := v.o.locate(p)
	v.warns = append(v.warns, &Error{File: file, Line: line, Key: k, Msg: fmt.Sprintf(format, args...)})
}

// secretFlags carry tokens. A command line is readable by every user of the
// machine (/proc/PID/cmdline, ps), for as long as the daemon runs.
var secretFlags = map[string]string{
	"token":          "token-file",
	"tokens":         "tokens-file",
	"clients-tokens": "clients-tokens-file",
	"relays-tokens":  "relays-tokens-file",
}

func (v *validator) secretsOnCommandLine() {
	for _, k := range slices.Sorted(maps.Keys(v.o.flags)) {
		name := v.o.flags[k]
		if file, ok := secretFlags[name]; ok {
			v.warns = append(v.warns, &Error{Key: "flag --" + name,
				Msg: fmt.Sprintf("every user of this machine can read the command line, and so this secret (ps, /proc/PID/cmdline); use --%s instead", file)})
		}
	}
}

func validate(f *File, o origin) error {
	v := &validator{o: o}
	if err := v.roleTable(f); err != nil {
		return err
	}
	expandPaths(f)
	f.Instance = v.instance(f)
	f.LogLevel = v.oneOf(key("log-level"), f.LogLevel, "info", "debug", "info", "warn", "error")
	f.LogFormat = v.oneOf(key("log-format"), f.LogFormat, "text", "text", "json")
	v.connet015(f)
	if f.TuneUDPBuffers == nil {
		on := true
		f.TuneUDPBuffers = &on
	}
	switch {
	case f.Client != nil:
		v.client(f.Client)
	case f.Server != nil:
		v.server(f.Server)
	case f.Control != nil:
		v.control(f.Control)
	case f.Relay != nil:
		v.relay(f.Relay)
	}
	v.secretsOnCommandLine()
	if o.risky {
		v.risks(f)
	}
	f.Warnings = v.warns
	f.Notices = v.notes
	return errors.Join(v.errs...)
}

// roleTables lists the role tables present, in a fixed order.
func (f *File) roleTables() []string {
	var r []string
	for _, t := range []struct {
		name string
		set  bool
	}{{"client", f.Client != nil}, {"server", f.Server != nil}, {"control", f.Control != nil}, {"relay", f.Relay != nil}} {
		if t.set {
			r = append(r, t.name)
		}
	}
	return r
}

const oneRole = "a configuration needs exactly one of the tables [client], [server], [control] or [relay]"

func (v *validator) roleTable(f *File) error {
	roles := f.roleTables()
	switch len(roles) {
	case 1:
		return nil
	case 0:
		return &Error{File: v.o.file, Msg: "no role table: " + oneRole}
	}
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = "[" + r + "]"
	}
	file, line, k := v.o.locate(key(roles[1]))
	return &Error{File: file, Line: line, Key: k, Msg: fmt.Sprintf("found tables %s; %s", strings.Join(names, ", "), oneRole)}
}

func (v *validator) oneOf(p keyPath, val, def string, allowed ...string) string {
	if val == "" {
		return def
	}
	if !slices.Contains(allowed, val) {
		v.fail(p, nil, "%q is not one of %s", val, strings.Join(allowed, ", "))
	}
	return val
}

func (v *validator) required(p keyPath, val string) bool {
	if val == "" {
		v.fail(p, nil, "required but not set")
		return false
	}
	return true
}

// readable opens a file the daemon will need later, so that a typo in a path
// fails at startup rather than at the first connection.
func (v *validator) readable(p keyPath, path string) {
	if path == "" {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		v.fail(p, err, "%v", err)
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		v.fail(p, err, "%v", err)
	} else if st.IsDir() {
		v.fail(p, nil, "%s is a directory, not a file", path)
	}
}

func (v *validator) requiredFile(p keyPath, path string) {
	if v.required(p, path) {
		v.readable(p, path)
	}
}

// storeDir falls back to systemd's StateDirectory=, which lists directories
// separated by ':' when a unit declares more than one.
func storeDir(dir string) string {
	if dir != "" {
		return dir
	}
	env := os.Getenv("STATE_DIRECTORY")
	if i := strings.IndexByte(env, ':'); i >= 0 {
		env = env[:i]
	}
	return env
}
