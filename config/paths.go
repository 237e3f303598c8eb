package config

import (
	"os"
	"path/filepath"
	"strings"
)

// systemd directories a unit hands to the service; file keys may name them
// (token-file = "${CREDENTIALS_DIRECTORY}/token" with LoadCredential=).
var pathVars = map[string]bool{
	"CREDENTIALS_DIRECTORY": true, "STATE_DIRECTORY": true, "CACHE_DIRECTORY": true,
	"RUNTIME_DIRECTORY": true, "CONFIGURATION_DIRECTORY": true, "LOGS_DIRECTORY": true,
}

// expandPath replaces ${NAME} and $NAME of those directories; everything
// else, other $ signs included, stays as written.
func expandPath(s string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	for name := range pathVars {
		v := os.Getenv(name)
		if i := strings.IndexByte(v, ':'); i >= 0 {
			v = v[:i] // several directories: the first
		}
		s = strings.ReplaceAll(s, "${"+name+"}", v)
		s = strings.ReplaceAll(s, "$"+name, v)
	}
	return s
}

// expandPaths expands every key that names a file or directory.
func expandPaths(f *File) {
	for _, p := range f.pathFields() {
		*p = expandPath(*p)
	}
}

func (f *File) pathFields() []*string {
	var out []*string
	if c := f.Client; c != nil {
		out = append(out, &c.TokenFile, &c.ServerCAs)
		for name, d := range c.Destinations {
			d.FileServerRoot = expandPath(d.FileServerRoot)
			c.Destinations[name] = d
		}
	}
	if s := f.Server; s != nil {
		out = append(out, &s.CertFile, &s.KeyFile, &s.TokensFile, &s.StoreDir)
	}
	if c := f.Control; c != nil {
		out = append(out, &c.CertFile, &c.KeyFile, &c.ClientsTokensFile, &c.RelaysTokensFile, &c.StoreDir)
	}
	if r := f.Relay; r != nil {
		out = append(out, &r.TokenFile, &r.ControlCAs, &r.StoreDir)
	}
	return out
}

// instance is the daemon's instance name: as given, else the config file's
// base name without extension, else the role.
func (v *validator) instance(f *File) string {
	name := f.Instance
	if name == "" && f.Path != "" {
		name = strings.TrimSuffix(filepath.Base(f.Path), filepath.Ext(f.Path))
	}
	if name == "" {
		if t := f.roleTables(); len(t) == 1 {
			name = t[0]
		}
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			v.fail(key("instance"), nil, "instance name %q may only hold letters, digits, - and _", name)
			break
		}
	}
	return name
}
