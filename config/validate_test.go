package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/connetd/connetd/restrict"
)

func TestDefaults(t *testing.T) {
	tests := []struct {
		name  string
		toml  string
		env   string // STATE_DIRECTORY
		check func(t *testing.T, f *File)
	}{
		{"client", doc(`[client]`, `token = "t"`, `[client.destinations.web]`, `addr = ":80"`, `[client.sources.web]`, `addr = ":81"`), "", func(t *testing.T, f *File) {
			eq(t, f.LogLevel, "info")
			eq(t, f.LogFormat, "text")
			eq(t, f.Path, "c.toml")
			c := f.Client
			eq(t, c.TokenValue, "t")
			eq(t, c.ServerAddr, "localhost:19190")
			eq(t, c.DirectAddr, ":19192")
			eq(t, c.StatusAddr, "")
			eq(t, c.Destinations["web"], Destination{Addr: ":80", Route: "any"})
			eq(t, c.Sources["web"], Source{Addr: ":81", Route: "any"})
		}},
		{"server", doc(`[server]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `tokens = ["a"]`), "/var/lib/connetd:/var/lib/other", func(t *testing.T, f *File) {
			s := f.Server
			eq(t, s.Addr, ":19190")
			eq(t, s.RelayAddr, ":19191")
			eq(t, s.RelayHostname, "localhost")
			eq(t, s.StoreDir, "/var/lib/connetd")
			eq(t, s.TokenValues, []string{"a"})
			eq(t, s.TokenRestricts, []restrict.Token(nil))
		}},
		{"control", doc(`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `clients-tokens-file = "tokens.txt"`), "/state", func(t *testing.T, f *File) {
			c := f.Control
			eq(t, c.ClientsAddr, ":19190")
			eq(t, c.RelaysAddr, ":19189")
			eq(t, c.StoreDir, "/state")
			eq(t, c.ClientsTokenValues, []string{"file-a", "file-b"})
			eq(t, c.RelaysTokenValues, []string(nil))
		}},
		{"relay", doc(`[relay]`, `token-file = "token.txt"`), "", func(t *testing.T, f *File) {
			r := f.Relay
			eq(t, r.TokenValue, "tok-1")
			eq(t, r.Addr, ":19191")
			eq(t, r.Hostname, "localhost")
			eq(t, r.ControlAddr, "localhost:19190")
			eq(t, r.StoreDir, "")
		}},
		{"explicit values kept", doc(`log-level = "debug"`, `log-format = "json"`, `[relay]`, `token = "t"`, `addr = "0.0.0.0:1"`, `hostname = "relay.example.com"`, `control-addr = "[::1]:2"`, `store-dir = "here"`), "/state", func(t *testing.T, f *File) {
			eq(t, f.LogLevel, "debug")
			eq(t, f.LogFormat, "json")
			eq(t, *f.Relay, Relay{Token: "t", TokenValue: "t", Addr: "0.0.0.0:1", Hostname: "relay.example.com", ControlAddr: "[::1]:2", StoreDir: "here"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inTempDir(t, stdFiles)
			t.Setenv("STATE_DIRECTORY", tt.env)
			write(t, "c.toml", tt.toml)
			f, err := Load("c.toml")
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, f)
		})
	}
}

func TestResolvedRestrictions(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "s.toml", doc(
		`[server]`,
		`cert-file = "cert.pem"`,
		`key-file = "key.pem"`,
		`tokens = ["a", "b", "c"]`,
		`[server.ip-restriction]`,
		`allow-cidrs = ["192.0.2.0/24"]`,
		`deny-cidrs = ["198.51.100.7/24"]`,
		`[[server.token-restriction]]`,
		`name-matches = "^web-"`,
		`role-matches = "source"`,
		`[[server.token-restriction]]`,
		`[[server.token-restriction]]`,
		`allow-cidrs = ["2001:db8::/32"]`,
		`role-matches = "destination"`,
	))
	f, err := Load("s.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := f.Server
	eq(t, s.TokenValues, []string{"a", "b", "c"})
	eq(t, s.IPRestrict.Allow, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
	eq(t, s.IPRestrict.Deny, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")})
	if len(s.TokenRestricts) != 3 {
		t.Fatalf("got %d token restrictions, want 3", len(s.TokenRestricts))
	}
	if r := s.TokenRestricts[0]; !r.AcceptsEndpoint("web-1", "source") || r.AcceptsEndpoint("web-1", "destination") || r.AcceptsEndpoint("db", "source") {
		t.Errorf("restriction 0 = %+v, want sources named web-*", r)
	}
	if r := s.TokenRestricts[1]; !r.AcceptsEndpoint("anything", "destination") {
		t.Errorf("restriction 1 = %+v, want no restriction", r)
	}
	eq(t, s.TokenRestricts[2].IP.Allow, []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")})
	eq(t, s.TokenRestricts[2].Role, "destination")
}

// Validate without Load has no text to take lines from, but still names the
// file and key.
func TestValidateWithoutLines(t *testing.T) {
	inTempDir(t, stdFiles)
	f := &File{Path: "x.toml", Client: &Client{Token: "t", Sources: map[string]Source{"s": {Addr: ":1", Route: "up"}}}}
	wantErr(t, f.Validate(), "x.toml", 0, "client.sources.s.route", `"up" is not one of any, direct, relay`)

	f = &File{Client: &Client{Token: "t"}, Relay: &Relay{Token: "t"}}
	wantErr(t, f.Validate(), "", 0, "relay", "found tables [client], [relay]")

	f = &File{Client: &Client{Token: "t"}}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("second Validate: %v", err)
	}
	eq(t, f.Client.DirectAddr, ":19192")
}

func TestCheckAddr(t *testing.T) {
	for addr, ok := range map[string]bool{
		":19190":          true,
		"localhost:1":     true,
		"[::1]:443":       true,
		"SERVER_IP:19190": true,
		"0.0.0.0:0":       true,
		"localhost":       false,
		":":               false,
		":65536":          false,
		"host:http":       false,
		"::1:80":          false,
		"":                false,
	} {
		if err := checkAddr(addr); (err == nil) != ok {
			t.Errorf("checkAddr(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func eq[T any](t *testing.T, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

func TestTuningAndPortMappingKeys(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "c.toml", doc(`[client]`, `token = "t"`))
	f, err := Load("c.toml")
	if err != nil {
		t.Fatal(err)
	}
	eq(t, *f.TuneUDPBuffers, true)
	eq(t, f.Client.PortMapping, "auto")

	write(t, "off.toml", doc(`tune-udp-buffers = false`, `[client]`, `token = "t"`, `port-mapping = "off"`))
	if f, err = Load("off.toml"); err != nil {
		t.Fatal(err)
	}
	eq(t, *f.TuneUDPBuffers, false)
	eq(t, f.Client.PortMapping, "off")

	write(t, "bad.toml", doc(`[client]`, `token = "t"`, `port-mapping = "upnp-only"`))
	_, err = Load("bad.toml")
	wantErr(t, err, "bad.toml", 3, "client.port-mapping", `"upnp-only" is not one of auto, off`)
}

func TestFileKeysExpandSystemdDirectories(t *testing.T) {
	inTempDir(t, stdFiles)
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "token"), []byte("from-credential\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	write(t, "c.toml", doc(`[client]`, `token-file = "${CREDENTIALS_DIRECTORY}/token"`))
	f, err := Load("c.toml")
	if err != nil {
		t.Fatal(err)
	}
	eq(t, f.Client.TokenValue, "from-credential")
	eq(t, expandPath("a$HOME/${USER}"), "a$HOME/${USER}") // not systemd directories: kept
}

func TestInstanceNameComesFromFlagFileOrRole(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "src.toml", doc(`[client]`, `token = "t"`))
	f, err := Load("src.toml")
	if err != nil {
		t.Fatal(err)
	}
	eq(t, f.Instance, "src")
	if f, err = ParseCommandLine([]string{"--config", "src.toml", "--instance", "edge-1"}); err != nil {
		t.Fatal(err)
	}
	eq(t, f.Instance, "edge-1")
	if f, err = ParseCommandLine([]string{"client", "--token", "t"}); err != nil {
		t.Fatal(err)
	}
	eq(t, f.Instance, "client")
	if _, err = ParseCommandLine([]string{"client", "--token", "t", "--instance", "a.b"}); err == nil || !strings.Contains(err.Error(), "instance name") {
		t.Fatalf("instance with a dot: %v", err)
	}
}
