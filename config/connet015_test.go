package config

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// role returns f's role table with what differs only by the form of the
// keys cleared, so that a v0.5 and a v0.15 file can be compared.
func role(f *File) any {
	switch {
	case f.Client != nil:
		c := *f.Client
		c.Connet015Client = Connet015Client{DirectResetKey: c.DirectResetKey}
		return c
	case f.Server != nil:
		s := *f.Server
		s.Connet015Server = Connet015Server{}
		return s
	case f.Control != nil:
		c := *f.Control
		c.Connet015Control = Connet015Control{}
		return c
	case f.Relay != nil:
		r := *f.Relay
		r.Connet015Relay = Connet015Relay{ControlName: r.ControlName}
		return r
	}
	return nil
}

// Each family of connet v0.15 keys loads to the same values as the v0.5
// keys it maps onto.
func TestConnet015SameAsV05(t *testing.T) {
	files := map[string]string{"ca.pem": "x", "reset.key": strings.Repeat("k", 32)}
	for k, v := range stdFiles {
		files[k] = v
	}
	inTempDir(t, files)
	for _, c := range []struct{ name, v05, v015 string }{
		{"client", doc(
			`[client]`, `token-file = "token.txt"`, `server-cas = "ca.pem"`, `port-mapping = "off"`,
			`[client.sources.web]`, `addr = ":8080"`,
		), doc(
			`[client]`, `token-file = "token.txt"`, `server-cas-file = "ca.pem"`, `nat-pmp = "disabled"`,
			`relay-encryptions = ["none", "tls", "dhxcp"]`,
			`[client.sources.web]`, `addr = ":8080"`,
		)},
		{"client nat-pmp system", doc(`[client]`, `token = "t"`, `port-mapping = "auto"`),
			doc(`[client]`, `token = "t"`, `nat-pmp = "system"`)},
		{"client nat-pmp dial", doc(`[client]`, `token = "t"`),
			doc(`[client]`, `token = "t"`, `nat-pmp = "dial"`, `port-mapping = "auto"`)},
		{"server", doc(
			`[server]`, `addr = ":2000"`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `tokens-file = "tokens.txt"`,
			`relay-addr = ":2001"`, `relay-hostname = "relay.example"`,
			`[server.ip-restriction]`, `allow-cidrs = ["10.0.0.0/8"]`, `deny-cidrs = ["10.1.0.0/16"]`,
		), doc(
			`[server]`, `tokens-file = "tokens.txt"`,
			`[[server.ingress]]`, `addr = ":2000"`, `cert-file = "cert.pem"`, `key-file = "key.pem"`,
			`allow-cidrs = ["10.0.0.0/8"]`, `deny-cidrs = ["10.1.0.0/16"]`,
			`[[server.relay-ingress]]`, `addr = ":2001"`, `hostports = ["relay.example:2001"]`,
		)},
		{"control", doc(
			`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `clients-tokens = ["a"]`, `relays-tokens = ["r1", "r2"]`,
			`clients-addr = ":3000"`, `relays-addr = ":3001"`,
			`[control.clients-ip-restriction]`, `allow-cidrs = ["10.0.0.0/8"]`,
			`[control.relays-ip-restriction]`, `deny-cidrs = ["192.0.2.0/24"]`,
			`[[control.relays-token-ip-restriction]]`, `allow-cidrs = ["10.2.0.0/16"]`,
			`[[control.relays-token-ip-restriction]]`, `deny-cidrs = ["10.3.0.0/16"]`,
		), doc(
			`[control]`, `clients-tokens = ["a"]`, `relays-tokens = ["r1", "r2"]`,
			`[[control.clients-ingress]]`, `addr = ":3000"`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `allow-cidrs = ["10.0.0.0/8"]`,
			`[[control.relays-ingress]]`, `addr = ":3001"`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `deny-cidrs = ["192.0.2.0/24"]`,
			`[[control.relays-token-restriction]]`, `allow-cidrs = ["10.2.0.0/16"]`,
			`[[control.relays-token-restriction]]`, `deny-cidrs = ["10.3.0.0/16"]`,
		)},
		{"relay", doc(
			`[relay]`, `token-file = "token.txt"`, `addr = ":4000"`, `hostname = "relay.example"`,
			`control-addr = "ctl.example:19189"`, `control-cas = "ca.pem"`,
		), doc(
			`[relay]`, `token-file = "token.txt"`, `control-addr = "ctl.example:19189"`, `control-cas-file = "ca.pem"`,
			`[[relay.ingress]]`, `addr = ":4000"`, `hostports = ["relay.example"]`,
		)},
	} {
		t.Run(c.name, func(t *testing.T) {
			write(t, "old.toml", c.v05)
			write(t, "new.toml", c.v015)
			old, err := Load("old.toml")
			if err != nil {
				t.Fatal(err)
			}
			nf, err := Load("new.toml")
			if err != nil {
				t.Fatal(err)
			}
			if a, b := role(old), role(nf); !reflect.DeepEqual(a, b) {
				t.Errorf("v0.5 and v0.15 files differ:\n v0.5: %+v\nv0.15: %+v", a, b)
			}
		})
	}
}

func TestConnet015ClientExtras(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 32)
	text := resetKeyEncoding.EncodeToString(key)
	files := map[string]string{"raw.key": string(key), "text.key": text + "\n", "bad.key": "short\n"}
	for k, v := range stdFiles {
		files[k] = v
	}
	inTempDir(t, files)
	for _, c := range []struct{ name, line string }{
		{"raw file", `direct-stateless-reset-key-file = "raw.key"`},
		{"text file", `direct-stateless-reset-key-file = "text.key"`},
		{"inline", `direct-stateless-reset-key = "` + text + `"`},
	} {
		write(t, "c.toml", doc(`[client]`, `token = "t"`, c.line, `server-name = "ctl.example"`,
			`[client.destinations.web]`, `addr = "localhost:80"`, `relay-encryptions = ["dhxcp"]`))
		f, err := Load("c.toml")
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if f.Client.DirectResetKey == nil || !bytes.Equal(f.Client.DirectResetKey[:], key) {
			t.Errorf("%s: key = %x, want %x", c.name, f.Client.DirectResetKey, key)
		}
		if f.Client.ServerName != "ctl.example" {
			t.Errorf("server-name = %q", f.Client.ServerName)
		}
		if len(f.Notices) != 1 || !strings.Contains(f.Notices[0].Msg, "end-to-end encrypted") {
			t.Errorf("notices = %v, want one about relay encryption", f.Notices)
		}
	}
	write(t, "c.toml", doc(`[client]`, `token = "t"`, `direct-stateless-reset-key-file = "bad.key"`))
	_, err := Load("c.toml")
	wantErr(t, err, "c.toml", 3, "client.direct-stateless-reset-key-file", "not a 32-byte key")
}

// Keys connetd cannot honour, or values that conflict, are errors naming
// the file, line and key, and saying why.
func TestConnet015Refused(t *testing.T) {
	inTempDir(t, stdFiles)
	srv := []string{`[server]`, `tokens = ["a"]`}
	cases := []struct {
		name string
		doc  string
		line int
		key  string
		msg  string
	}{
		{"two ingresses", doc(append(srv, `[[server.ingress]]`, `addr = ":1"`, `cert-file = "cert.pem"`, `key-file = "key.pem"`,
			`[[server.ingress]]`, `addr = ":2"`)...), 7, "server.ingress[1]", "cannot honour 2 ingresses"},
		{"ingress and addr", doc(`[server]`, `tokens = ["a"]`, `addr = ":1"`, `cert-file = "cert.pem"`, `key-file = "key.pem"`,
			`[[server.ingress]]`, `addr = ":2"`), 7, "server.ingress[0].addr", `conflicts with server.addr = ":1"`},
		{"bad ingress addr", doc(append(srv, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `[[server.ingress]]`, `addr = "nope"`)...),
			6, "server.ingress[0].addr", "not a host:port"},
		{"ingress cert missing", doc(append(srv, `[[server.ingress]]`, `cert-file = "missing.pem"`, `key-file = "key.pem"`)...),
			4, "server.ingress[0].cert-file", "no such file"},
		{"relay ingress cidrs", doc(append(srv, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `[[server.relay-ingress]]`, `deny-cidrs = ["10.0.0.0/8"]`)...),
			6, "server.relay-ingress[0].deny-cidrs", "no IP restriction of its own"},
		{"two hostports", doc(append(srv, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `[[server.relay-ingress]]`, `hostports = ["a", "b"]`)...),
			6, "server.relay-ingress[0].hostports", "one address per relay"},
		{"hostport other port", doc(append(srv, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `[[server.relay-ingress]]`, `addr = ":5000"`, `hostports = ["r.example:6000"]`)...),
			7, "server.relay-ingress[0].hostports", "listens on (5000), not 6000"},
		{"endpoint expiry", doc(append(srv, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `endpoint-expiry-timeout = "1m"`)...),
			5, "server.endpoint-expiry-timeout", "keeps no expiry timer"},
		{"endpoint expiry disable", doc(append(srv, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `endpoint-expiry-disable = true`)...),
			5, "server.endpoint-expiry-disable", "keeps no expiry timer"},
		{"control two certs", doc(`[control]`, `clients-tokens = ["a"]`,
			`[[control.clients-ingress]]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`,
			`[[control.relays-ingress]]`, `cert-file = "key.pem"`), 7, "control.relays-ingress[0].cert-file", "one certificate"},
		{"relays token restriction twice", doc(`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `clients-tokens = ["a"]`, `relays-tokens = ["r"]`,
			`[[control.relays-token-ip-restriction]]`, `allow-cidrs = ["10.0.0.0/8"]`,
			`[[control.relays-token-restriction]]`, `allow-cidrs = ["10.0.0.0/8"]`), 8, "control.relays-token-restriction", "keep one"},
		{"relays token restriction bad cidr", doc(`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `clients-tokens = ["a"]`, `relays-tokens = ["r"]`,
			`[[control.relays-token-restriction]]`, `allow-cidrs = ["nope"]`), 7, "control.relays-token-restriction[0].allow-cidrs", "nope"},
		{"relay metadata", doc(`[relay]`, `token = "t"`, `metadata = "eu-1"`), 3, "relay.metadata", "carries no metadata"},
		{"relay handshake", doc(`[relay]`, `token = "t"`, `handshake-idle-timeout = "10s"`), 3, "relay.handshake-idle-timeout", "not configurable"},
		{"relay two ingresses", doc(`[relay]`, `token = "t"`, `[[relay.ingress]]`, `addr = ":1"`, `[[relay.ingress]]`, `addr = ":2"`),
			5, "relay.ingress[1]", "cannot honour 2 ingresses"},
		{"nat-pmp value", doc(`[client]`, `token = "t"`, `nat-pmp = "upnp"`), 3, "client.nat-pmp", "not one of system, dial, disabled"},
		{"nat-pmp conflict", doc(`[client]`, `token = "t"`, `port-mapping = "auto"`, `nat-pmp = "disabled"`), 4, "client.nat-pmp", `means port-mapping = "off"`},
		{"server-cas conflict", doc(`[client]`, `token = "t"`, `server-cas = "cert.pem"`, `server-cas-file = "key.pem"`), 4, "client.server-cas-file", "conflicts with client.server-cas"},
		{"relay-encryptions value", doc(`[client]`, `token = "t"`, `[client.sources.s]`, `addr = ":1"`, `relay-encryptions = ["aes"]`),
			5, "client.sources.s.relay-encryptions", `"aes" is not one of none, tls, dhxcp`},
		{"reset key text", doc(`[client]`, `token = "t"`, `direct-stateless-reset-key = "xyz"`), 3, "client.direct-stateless-reset-key", "not a 32-byte key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			write(t, "f.toml", c.doc)
			_, err := Load("f.toml")
			wantErr(t, err, "f.toml", c.line, c.key, c.msg)
		})
	}
}

func TestConnetTokenEnv(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "c.toml", doc(`[client]`))
	t.Setenv("CONNET_TOKEN", "from-env")
	f, err := Load("c.toml")
	if err != nil {
		t.Fatal(err)
	}
	if f.Client.TokenValue != "from-env" {
		t.Errorf("token = %q, want from-env", f.Client.TokenValue)
	}
	// token and token-file win over the environment.
	write(t, "c.toml", doc(`[client]`, `token-file = "token.txt"`))
	if f, err = Load("c.toml"); err != nil {
		t.Fatal(err)
	}
	if f.Client.TokenValue != "tok-1" {
		t.Errorf("token = %q, want tok-1", f.Client.TokenValue)
	}
	t.Setenv("CONNET_TOKEN", "")
	write(t, "c.toml", doc(`[client]`))
	_, err = Load("c.toml")
	wantErr(t, err, "c.toml", 1, "client.token", "required")
}

func TestMergedConfigFiles(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "base.toml", doc(
		`log-level = "debug"`,
		`[client]`,
		`token = "inline"`,
		`server-addr = "ctl.example:19190"`,
		`[client.destinations.web]`,
		`addr = "localhost:80"`,
		`route = "direct"`,
	))
	write(t, "site.toml", doc(
		`[client]`,
		`token-file = "token.txt"`,
		`direct-addr = ":29192"`,
		`[client.destinations.web]`,
		`route = "relay"`,
		`[client.sources.db]`,
		`addr = ":5432"`,
	))
	f, err := LoadFiles("base.toml", "site.toml")
	if err != nil {
		t.Fatal(err)
	}
	c := f.Client
	if f.LogLevel != "debug" || c.ServerAddr != "ctl.example:19190" || c.DirectAddr != ":29192" {
		t.Errorf("merged: log-level %q server-addr %q direct-addr %q", f.LogLevel, c.ServerAddr, c.DirectAddr)
	}
	// token-file in the later file replaces the earlier token.
	if c.TokenValue != "tok-1" || c.Token != "" {
		t.Errorf("token = %q (inline %q), want tok-1 from the later token-file", c.TokenValue, c.Token)
	}
	if d := c.Destinations["web"]; d.Addr != "localhost:80" || d.Route != "relay" {
		t.Errorf("web = %+v, want addr from base and route from site", d)
	}
	if _, ok := c.Sources["db"]; !ok {
		t.Error("source db from site.toml missing")
	}
	if f.Path != "base.toml" || f.Instance != "base" {
		t.Errorf("path %q instance %q, want the first file's", f.Path, f.Instance)
	}

	// Errors name the file and line the key came from.
	write(t, "bad.toml", doc(`[client]`, ``, `[client.destinations.web]`, `route = "sideways"`))
	_, err = LoadFiles("base.toml", "bad.toml")
	wantErr(t, err, "bad.toml", 4, "client.destinations.web.route", "not one of")
	write(t, "bad.toml", doc(`[client]`, `server-addr = "nope"`))
	_, err = LoadFiles("base.toml", "bad.toml")
	wantErr(t, err, "bad.toml", 2, "client.server-addr", "not a host:port")
	// ...and a key left from the earlier file points there.
	write(t, "ok.toml", doc(`[client]`, `direct-addr = ":1"`))
	write(t, "base2.toml", doc(`[client]`, `token = "t"`, `status-addr = "nope"`))
	_, err = LoadFiles("base2.toml", "ok.toml")
	wantErr(t, err, "base2.toml", 3, "client.status-addr", "not a host:port")
	// Unknown keys are reported for each file.
	write(t, "unknown.toml", doc(`[client]`, `tokn = "x"`))
	_, err = LoadFiles("base.toml", "unknown.toml")
	wantErr(t, err, "unknown.toml", 2, "client.tokn", "unknown key")

	// The command line takes several --config.
	f, err = ParseCommandLine([]string{"--config", "base.toml", "--config", "site.toml", "--route", "any", "--src-name", "x", "--src-addr", ":1"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Client.DirectAddr != ":29192" || f.Client.TokenValue != "tok-1" {
		t.Errorf("command line merge: %+v", f.Client)
	}
}

func TestCheckFiles(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "s.toml", doc(`[server]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `tokens = ["a"]`,
		`[[server.token-restriction]]`, `name-matches = "web"`))
	warns, probs := CheckFiles("s.toml")
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	var ws []string
	for _, w := range warns {
		ws = append(ws, w.Error())
	}
	all := strings.Join(ws, "\n")
	for _, want := range []string{
		`s.toml:6: server.token-restriction[0].name-matches: "web" is not anchored`,
		`s.toml:4: server.tokens: tokens are written inline and clients are accepted from any address`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings\n%s\nlack %q", all, want)
		}
	}
	write(t, "s.toml", doc(`[server]`, `cert-file = "missing.pem"`, `tokens = ["a"]`, `bogus = 1`))
	_, probs = CheckFiles("s.toml")
	if len(probs) != 1 || !strings.Contains(probs[0].Error(), "s.toml:4: server.bogus: unknown key") {
		t.Errorf("problems = %v", probs)
	}
	write(t, "s.toml", doc(`[server]`, `cert-file = "missing.pem"`, `tokens = ["a"]`))
	_, probs = CheckFiles("s.toml")
	var ce *Error
	if len(probs) != 2 || !errors.As(probs[0], &ce) || ce.Line != 2 {
		t.Errorf("problems = %v, want cert-file at line 2 and key-file", probs)
	}
}
