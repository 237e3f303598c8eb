package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README's example configs are in testdata/seed, copied verbatim. Their
// paths stay as the README writes them; the files they name are created in a
// temporary working directory.
var seedFiles = map[string]string{
	"cert.pem":              "x",
	"key.pem":               "x",
	"path/to/cert.pem":      "x",
	"path/to/key.pem":       "x",
	"path/to/ca/file.pem":   "x",
	"path/to/client/tokens": "client-token-from-file\n",
	"path/to/relay/token":   "relay-token-from-file\n",
}

func readSeed(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "seed", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// dropLines removes the lines that start with one of prefixes.
func dropLines(text string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		keep := true
		for _, p := range prefixes {
			keep = keep && !strings.HasPrefix(l, p)
		}
		if keep {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestSeedExamples(t *testing.T) {
	tests := []struct {
		file string
		// Expected errors, at their line; the spec must load once the lines
		// in drop are removed.
		errLine int
		errKey  string
		errMsg  string
		drop    []string
		// Fragments that are not a config by themselves load once put after
		// prefix or before suffix (other seeds).
		prefix, suffix string
		check          func(t *testing.T, f *File)
	}{
		{file: "server.toml", check: func(t *testing.T, f *File) {
			eq(t, f.Server.TokenValues, []string{"client-d-token", "client-s-token"})
			eq(t, f.Server.Addr, ":19190")
		}},
		{file: "client-d.toml", check: func(t *testing.T, f *File) {
			eq(t, f.Client.ServerAddr, "SERVER_IP:19190")
			eq(t, f.Client.ServerCAs, "cert.pem")
			eq(t, f.Client.Destinations, map[string]Destination{"serviceA": {Addr: ":3000", Route: "any"}})
		}},
		{file: "client-s.toml", check: func(t *testing.T, f *File) {
			eq(t, f.Client.TokenValue, "client-s-token")
			eq(t, f.Client.Sources, map[string]Source{"serviceA": {Addr: ":8000", Route: "any"}})
		}},
		{
			// token-file wins over token, and tokens-file over tokens, so
			// the full specs load as written.
			file: "client-config.toml",
			check: func(t *testing.T, f *File) {
				c := f.Client
				eq(t, c.TokenValue, "relay-token-from-file")
				eq(t, c.StatusAddr, "127.0.0.1:19182")
				eq(t, c.Destinations, map[string]Destination{
					"serviceX": {Addr: "localhost:3000", Route: "any", FileServerRoot: "."},
					"serviceY": {Addr: "192.168.1.100:8000", Route: "direct"},
				})
				eq(t, c.Sources, map[string]Source{
					"serviceX": {Addr: ":8000", Route: "relay"},
					"serviceY": {Addr: ":8001", Route: "direct"},
				})
			},
		},
		{
			file: "server-config.toml",
			check: func(t *testing.T, f *File) {
				s := f.Server
				eq(t, s.TokenValues, []string{"client-token-from-file"})
				eq(t, len(s.TokenRestricts), 1)
				eq(t, s.StoreDir, "path/to/server-store")
				eq(t, s.RelayHostname, "localhost")
			},
		},
		{
			file: "control-config.toml",
			check: func(t *testing.T, f *File) {
				c := f.Control
				eq(t, c.ClientsTokenValues, []string{"client-token-from-file"})
				eq(t, c.RelaysTokenValues, []string{"relay-token-from-file"})
				eq(t, len(c.ClientsTokenRestricts), 1)
				eq(t, len(c.RelaysTokenRestricts), 1)
			},
		},
		{
			file: "relay-config.toml",
			check: func(t *testing.T, f *File) {
				eq(t, f.Relay.TokenValue, "relay-token-from-file")
				eq(t, f.Relay.ControlCAs, "path/to/ca/file.pem")
			},
		},
		{
			file: "ip-restriction.toml", errLine: 1, errKey: "server.cert-file", errMsg: "required but not set",
			prefix: "server.toml",
			check: func(t *testing.T, f *File) {
				eq(t, f.Server.IPRestrict.Allow, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
				eq(t, f.Server.IPRestrict.Deny, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")})
			},
		},
		{
			file: "logging.toml", errMsg: "no role table",
			suffix: "client-s.toml",
			check: func(t *testing.T, f *File) {
				eq(t, f.LogLevel, "info")
				eq(t, f.LogFormat, "text")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			text := readSeed(t, tt.file)
			var prefix, suffix string
			if tt.prefix != "" {
				prefix = readSeed(t, tt.prefix)
			}
			if tt.suffix != "" {
				suffix = readSeed(t, tt.suffix)
			}
			inTempDir(t, seedFiles)

			// Every example decodes: no syntax error, unknown key or type
			// mismatch.
			if _, _, err := decode(tt.file, text); err != nil {
				t.Fatalf("decode: %v", err)
			}

			write(t, tt.file, text)
			f, err := Load(tt.file)
			if tt.errMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, f)
				return
			}
			wantErr(t, err, tt.file, tt.errLine, tt.errKey, tt.errMsg)

			fixed := prefix + dropLines(text, tt.drop...) + suffix
			write(t, "fixed.toml", fixed)
			if f, err = Load("fixed.toml"); err != nil {
				t.Fatalf("with %q dropped, after %q, before %q: %v", tt.drop, tt.prefix, tt.suffix, err)
			}
			tt.check(t, f)
		})
	}
}
