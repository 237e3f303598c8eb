package config

import (
	"errors"
	"flag"
	"strings"
	"testing"
)

var flagFiles = map[string]string{
	"cert.pem":   "x",
	"key.pem":    "x",
	"token.txt":  "file-token\n",
	"tokens.txt": "file-a\nfile-b\n",
	"client.toml": doc(
		`log-level = "warn"`,
		`[client]`,
		`token-file = "token.txt"`,
		`server-addr = "file.example:19190"`,
		`[client.destinations.web]`,
		`addr = ":80"`,
		`route = "relay"`,
	),
	"bad.toml": doc(
		`[client]`,
		`token = "t"`,
		`[client.sources.s]`,
		`addr = ":1"`,
		`route = "up"`,
	),
	"server.toml": doc(
		`[server]`,
		`cert-file = "cert.pem"`,
		`key-file = "key.pem"`,
		`tokens = ["a"]`,
		`relay-hostname = "file.example"`,
	),
}

func TestParseCommandLine(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, f *File)
	}{
		{"role from file", []string{"--config", "client.toml"}, func(t *testing.T, f *File) {
			eq(t, f.Path, "client.toml")
			eq(t, f.LogLevel, "warn")
			eq(t, f.Client.TokenValue, "file-token")
			eq(t, f.Client.ServerAddr, "file.example:19190")
		}},
		{"flags override file", []string{"client", "-config=client.toml", "--server-addr", "flag.example:1", "--log-level", "debug", "--token", "flag-token"}, func(t *testing.T, f *File) {
			eq(t, f.LogLevel, "debug")
			eq(t, f.Client.ServerAddr, "flag.example:1")
			eq(t, f.Client.TokenValue, "flag-token")
			eq(t, f.Client.TokenFile, "") // replaced by --token
			eq(t, f.Client.Destinations["web"].Route, "relay")
		}},
		{"flag endpoints join the file's", []string{"--config", "client.toml", "--src-name", "db", "--src-addr", ":5432", "--dst-name", "api", "--dst-addr", "localhost:8080", "--route", "direct", "--proxy-proto-version", "v2", "--file-server-root", "/srv"}, func(t *testing.T, f *File) {
			eq(t, f.Client.Sources, map[string]Source{"db": {Addr: ":5432", Route: "direct"}})
			eq(t, f.Client.Destinations, map[string]Destination{
				"web": {Addr: ":80", Route: "relay"},
				"api": {Addr: "localhost:8080", Route: "direct", ProxyProtoVersion: "v2", FileServerRoot: "/srv"},
			})
		}},
		{"flag endpoint replaces file endpoint", []string{"--config", "client.toml", "--dst-name", "web", "--dst-addr", ":81"}, func(t *testing.T, f *File) {
			eq(t, f.Client.Destinations, map[string]Destination{"web": {Addr: ":81", Route: "any"}})
		}},
		{"flags only, no role", []string{"--server-addr", "localhost:19190", "--token", "CLIENT_TOKEN", "--src-name", "example", "--src-addr", ":9000"}, func(t *testing.T, f *File) {
			eq(t, f.Path, "")
			eq(t, f.Client.TokenValue, "CLIENT_TOKEN")
			eq(t, f.Client.Sources, map[string]Source{"example": {Addr: ":9000", Route: "any"}})
			eq(t, f.Client.DirectAddr, ":19192")
		}},
		{"server lists", []string{"server", "--config", "server.toml", "--tokens", "x,y", "--tokens", "z", "--tokens-file", "tokens.txt", "--relay-hostname", "flag.example"}, func(t *testing.T, f *File) {
			eq(t, f.Server.Tokens, []string{"x", "y", "z"})
			eq(t, f.Server.TokenValues, []string{"file-a", "file-b"}) // the file replaces the list
			eq(t, f.Server.RelayHostname, "flag.example")
			eq(t, f.Server.CertFile, "cert.pem")
		}},
		{"control flags only", []string{"control", "--cert-file", "cert.pem", "--key-file", "key.pem", "--clients-tokens", "c", "--relays-tokens-file", "tokens.txt", "--relays-addr", ":2", "--store-dir", "st"}, func(t *testing.T, f *File) {
			eq(t, f.Control.ClientsTokenValues, []string{"c"})
			eq(t, f.Control.RelaysTokenValues, []string{"file-a", "file-b"})
			eq(t, f.Control.RelaysAddr, ":2")
			eq(t, f.Control.StoreDir, "st")
		}},
		{"relay flags only", []string{"relay", "--token-file", "token.txt", "--hostname", "r.example", "--control-addr", "c.example:19190", "--control-cas", "cert.pem", "--status-addr", "127.0.0.1:19181", "--log-format", "json"}, func(t *testing.T, f *File) {
			eq(t, f.Relay.TokenValue, "file-token")
			eq(t, f.Relay.ControlCAs, "cert.pem")
			eq(t, f.Relay.StatusAddr, "127.0.0.1:19181")
			eq(t, f.LogFormat, "json")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inTempDir(t, flagFiles)
			f, err := ParseCommandLine(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, f)
		})
	}
}

func TestParseCommandLineErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		file string // "" for errors not located in a file
		line int
		key  string
		msg  string
	}{
		{"role contradicts file", []string{"server", "--config", "client.toml"}, "client.toml", 2, "client", "asks for server"},
		{"bad flag route", []string{"--config", "client.toml", "--src-name", "s", "--src-addr", ":1", "--route", "sideways"}, "", 0, "flag --route", `"sideways" is not one of any, direct, relay`},
		{"bad flag endpoint name", []string{"--token", "t", "--dst-name", "", "--dst-addr", ":1"}, "", 0, "flag --dst-name", "endpoint name is empty"},
		{"bad flag address", []string{"--token", "t", "--dst-name", "d", "--dst-addr", "nowhere"}, "", 0, "flag --dst-addr", "missing port"},
		{"bad flag proxy proto", []string{"--config", "client.toml", "--dst-name", "d", "--dst-addr", ":1", "--proxy-proto-version", "v9"}, "", 0, "flag --proxy-proto-version", `"v9" is not one of v1, v2`},
		{"src-name without src-addr", []string{"--token", "t", "--src-name", "s"}, "", 0, "flag --src-name", "needs --src-addr"},
		{"src-addr without src-name", []string{"--token", "t", "--src-addr", ":1"}, "", 0, "flag --src-addr", "needs --src-name"},
		{"dst-name without dst-addr", []string{"--token", "t", "--dst-name", "d"}, "", 0, "flag --dst-name", "needs --dst-addr"},
		{"route without endpoint", []string{"--token", "t", "--route", "any"}, "", 0, "flag --route", "needs --src-name or --dst-name"},
		{"file-server-root without destination", []string{"--token", "t", "--file-server-root", "."}, "", 0, "flag --file-server-root", "needs --dst-name"},
		{"missing token, flags only", []string{"client", "--src-name", "s", "--src-addr", ":1"}, "", 0, "flag --token", "one of token or token-file is required"},
		{"missing cert, flags only", []string{"server", "--tokens", "a", "--key-file", "key.pem"}, "", 0, "flag --cert-file", "required but not set"},
		{"missing flag token file", []string{"relay", "--token-file", "nope.txt"}, "", 0, "flag --token-file", "no such file"},
		{"bad flag log level", []string{"--token", "t", "--log-level", "trace"}, "", 0, "flag --log-level", `"trace" is not one of`},
		{"file error beside flags", []string{"--config", "bad.toml", "--server-addr", "x:1", "--src-name", "t", "--src-addr", ":2"}, "bad.toml", 5, "client.sources.s.route", `"up" is not one of`},
		{"duplicate flag tokens", []string{"server", "--config", "server.toml", "--tokens", "a,a"}, "", 0, "flag --tokens", "token 2 is the same as token 1"},
		{"missing config file", []string{"--config", "nope.toml"}, "nope.toml", 0, "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inTempDir(t, flagFiles)
			_, err := ParseCommandLine(tt.args)
			wantErr(t, err, tt.file, tt.line, tt.key, tt.msg)
		})
	}
}

// Errors of the flag package itself are not config.Errors; they only need to
// say what is wrong.
func TestParseCommandLineUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"unknown flag", []string{"relay", "--src-name", "x"}, "flag provided but not defined: -src-name"},
		{"flag of another role", []string{"--config", "server.toml", "--token", "t"}, "connetd server: flag provided but not defined: -token"},
		{"missing value", []string{"--config"}, "flag needs an argument: -config"},
		{"role after flags", []string{"--config", "client.toml", "client"}, `unexpected argument "client"; the role must come before the flags`},
		{"stray argument", []string{"client", "--token", "t", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inTempDir(t, flagFiles)
			_, err := ParseCommandLine(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want an error containing %q", err, tt.msg)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string // a flag only this role's help lists
	}{
		{[]string{"-h"}, "--src-name"},
		{[]string{"relay", "--help"}, "--control-cas"},
		{[]string{"--config", "server.toml", "-help"}, "--relay-hostname"},
		{[]string{"control", "--store-dir", "x", "-h"}, "--relays-tokens-file"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			inTempDir(t, flagFiles)
			_, err := ParseCommandLine(tt.args)
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("got %v, want flag.ErrHelp", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "--log-format") {
				t.Errorf("help text lacks %s or --log-format:\n%s", tt.want, err)
			}
		})
	}
}

func TestHelpWithoutRole(t *testing.T) {
	inTempDir(t, nil)
	_, err := ParseCommandLine([]string{"--help"})
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"connetd [client|server|control|relay]", "usage: connetd client", "--token-file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("help lacks %q:\n%s", want, err)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, role := range roleNames {
		u := Usage(role)
		for _, d := range append(commonFlags, roleFlags[role]...) {
			if !strings.Contains(u, "--"+d.name+" ") {
				t.Errorf("Usage(%q) does not list --%s", role, d.name)
			}
		}
	}
	if u := Usage(""); !strings.Contains(u, "connetd [client|server|control|relay]") {
		t.Errorf("Usage(\"\") = %q, want the overview of roles", u)
	}
}
