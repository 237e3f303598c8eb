package config

import (
	"strings"
	"testing"
	"time"
)

// doc joins lines, so that a test's line numbers can be read off the list:
// the first argument is line 1.
func doc(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// Valid heads of role tables, to put the problem under test after them.
var (
	clientHead = []string{`[client]`, `token = "t"`}
	serverHead = []string{`[server]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `tokens = ["a", "b"]`}
)

func with(head []string, more ...string) string {
	return doc(append(append([]string{}, head...), more...)...)
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		line int
		key  string
		msg  string
	}{
		{"syntax error", with(clientHead, `server-addr = "x`), 3, "client.server-addr", "newlines"},
		{"syntax error without key", doc(`[client]`, `token = "t"`, `[client]`), 3, "", "already been defined"},
		{"unknown top-level key", doc(`log-levle = "info"`, `[client]`, `token = "t"`), 1, "log-levle", "unknown key"},
		{"unknown top-level table", with(clientHead, `[clients]`, `token = "t"`), 3, "clients", "unknown key"},
		{"unknown key in nested table", with(serverHead, `[server.ip-restriction]`, `allow-cidr = []`), 6, "server.ip-restriction.allow-cidr", "unknown key"},
		{"unknown key in endpoint table", with(clientHead, `[client.destinations.web]`, `addr = ":80"`, `rout = "any"`), 5, "client.destinations.web.rout", "unknown key"},
		{"unknown key in quoted endpoint", with(clientHead, `[client.destinations."my svc"]`, `addr = ":80"`, `# comment`, `"rou\u0074e2" = "any"`), 6, `client.destinations."my svc".route2`, "unknown key"},
		{"unknown dotted key", with(clientHead, `destinations.web.addr = ":80"`, `destinations.web.rute = "x"`), 4, "client.destinations.web.rute", "unknown key"},
		{"unknown key in second array table", with(serverHead, `[[server.token-restriction]]`, `[[server.token-restriction]]`, `name-match = "x"`), 7, "server.token-restriction.name-match", "unknown key"},
		{"wrong type", with(clientHead, `direct-addr = 19192`), 3, "client.direct-addr", "expected a string, found an integer"},
		{"wrong type for table", doc(`client = "yes"`), 1, "client", "expected a table, found a string"},
		{"wrong type in array", with(serverHead, `tokens-file = ["x"]`), 5, "server.tokens-file", "expected a string, found an array"},
		{"bad CIDR", with(serverHead, `[server.ip-restriction]`, `allow-cidrs = ["10.0.0.0/8"]`, `deny-cidrs = ["10.0.0.0/33"]`), 7, "server.ip-restriction.deny-cidrs", `"10.0.0.0/33" is not a network in CIDR form`},
		{"bad regex", with(serverHead, `[[server.token-restriction]]`, `[[server.token-restriction]]`, `name-matches = "web-("`), 7, "server.token-restriction[1].name-matches", "missing closing )"},
		{"bad role-matches", with(serverHead, `token-restriction = [`, `  {},`, `  {role-matches = "sink"},`, `]`), 7, "server.token-restriction[1].role-matches", `"sink" is neither "source" nor "destination"`},
		{"bad route", with(clientHead, `[client.destinations.web]`, `addr = ":80"`, `route = "sideways"`), 5, "client.destinations.web.route", `"sideways" is not one of any, direct, relay`},
		{"bad source route", with(clientHead, `sources.web = { addr = ":80", route = "Any" }`), 3, "client.sources.web.route", `"Any" is not one of any, direct, relay`},
		{"bad proxy-proto-version", with(clientHead, `[client.destinations.web]`, `addr = ":80"`, `proxy-proto-version = "v3"`), 5, "client.destinations.web.proxy-proto-version", `"v3" is not one of v1, v2`},
		{"missing destination addr", with(clientHead, ``, `[client.destinations.web]`, `route = "any"`), 4, "client.destinations.web.addr", "required but not set"},
		{"missing source addr", with(clientHead, `[client.sources.web]`), 3, "client.sources.web.addr", "required but not set"},
		{"url and addr both", with(clientHead, `[client.sources.dns]`, `addr = ":53"`, `url = "udp://:53"`), 5, "client.sources.dns.url", "set addr or url, not both"},
		{"url with unknown scheme", with(clientHead, `[client.destinations.web]`, `url = "sctp://:80"`), 4, "client.destinations.web.url", `scheme "sctp" is not one of tcp, udp`},
		{"url without port", with(clientHead, `[client.destinations.dns]`, `url = "udp://localhost"`), 4, "client.destinations.dns.url", "missing port"},
		{"url with a path", with(clientHead, `[client.sources.dns]`, `url = "udp://:53/x"`), 4, "client.sources.dns.url", "takes only a host and a port"},
		{"url without scheme", with(clientHead, `[client.sources.dns]`, `url = "127.0.0.1:53"`), 4, "client.sources.dns.url", "SCHEME://HOST:PORT"},
		{"proxy protocol on udp", with(clientHead, `[client.destinations.dns]`, `url = "udp://127.0.0.1:53"`, `proxy-proto-version = "v2"`), 5, "client.destinations.dns.proxy-proto-version", "PROXY protocol does not apply to udp"},
		{"file server on udp", with(clientHead, `[client.destinations.dns]`, `url = "udp://127.0.0.1:53"`, `file-server-root = "/srv"`), 5, "client.destinations.dns.file-server-root", "for tcp destinations"},
		{"udp key on tcp", with(clientHead, `[client.sources.web]`, `url = "tcp://:80"`, `udp-idle-timeout = "10s"`), 5, "client.sources.web.udp-idle-timeout", "applies only to udp:// endpoints"},
		{"bad udp idle timeout", with(clientHead, `[client.sources.dns]`, `url = "udp://:53"`, `udp-idle-timeout = "ten"`), 5, "client.sources.dns.udp-idle-timeout", "not a positive duration"},
		{"negative udp max flows", with(clientHead, `[client.destinations.dns]`, `url = "udp://:53"`, `udp-max-flows = -1`), 5, "client.destinations.dns.udp-max-flows", "not a positive number"},
		{"missing token", doc(`# a client`, `[client]`, `server-addr = "localhost:19190"`), 2, "client.token", "one of token or token-file is required"},
		{"missing cert-file", doc(`[server]`, `key-file = "key.pem"`, `tokens = ["a"]`), 1, "server.cert-file", "required but not set"},
		{"missing tokens", doc(`[server]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`), 1, "server.tokens", "one of tokens or tokens-file is required"},
		{"missing clients tokens", doc(`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`), 1, "control.clients-tokens", "one of clients-tokens or clients-tokens-file is required"},
		{"tokens file with no tokens", with(serverHead[:3], `tokens-file = "empty.txt"`), 4, "server.tokens-file", "empty.txt holds none"},
		{"token restriction count", with(serverHead, `tokens-file = "tokens.txt"`, `[[server.token-restriction]]`, `[[server.token-restriction]]`, `[[server.token-restriction]]`), 6, "server.token-restriction", "has 3 entries but there are 2 tokens"},
		{"relay token restriction count", doc(`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `clients-tokens = ["c"]`, `relays-tokens = ["r"]`, `relays-token-ip-restriction = [{}, {}]`), 6, "control.relays-token-ip-restriction", "has 2 entries but there is 1 token"},
		{"two role tables", with(clientHead, `[relay]`, `token = "t"`), 3, "relay", "found tables [client], [relay]"},
		{"no role table", doc(`log-level = "debug"`), 0, "", "no role table"},
		{"missing token file", doc(`[client]`, `token-file = "nope.txt"`), 2, "client.token-file", "nope.txt: no such file"},
		{"token file with two tokens", doc(`[relay]`, `token-file = "tokens.txt"`), 2, "relay.token-file", "holds 2 tokens"},
		{"missing cert file", doc(`[control]`, `cert-file = "certs/nope.pem"`, `key-file = "key.pem"`, `clients-tokens = ["a"]`), 2, "control.cert-file", "no such file"},
		{"missing server-cas", with(clientHead, `server-cas = "ca.pem"`), 3, "client.server-cas", "no such file"},
		{"bad log level", doc(`log-level = "loud"`, `[client]`, `token = "t"`), 1, "log-level", `"loud" is not one of debug, info, warn, error`},
		{"bad log format", doc(`log-level = "info"`, `log-format = "yaml"`, `[client]`, `token = "t"`), 2, "log-format", `"yaml" is not one of text, json`},
		{"bad address", with(clientHead, `server-addr = "example.com"`), 3, "client.server-addr", "missing port"},
		{"bad port", doc(`[relay]`, `token = "t"`, `control-addr = "example.com:http"`), 3, "relay.control-addr", `port "http" is not a number`},
		{"hostname with port", doc(`[relay]`, `token = "t"`, `hostname = "relay.example.com:19191"`), 3, "relay.hostname", "includes a port"},
		{"control characters in name", with(clientHead, `[client.sources."a\tb"]`, `addr = ":1"`), 3, `client.sources."a\tb"`, "control characters"},
		{"empty endpoint name", with(clientHead, `[client.sources.""]`, `addr = ":1"`), 3, `client.sources.""`, "endpoint name is empty"},
		{"long endpoint name", with(clientHead, `[client.sources.`+strings.Repeat("n", 256)+`]`, `addr = ":1"`), 3, "client.sources." + strings.Repeat("n", 256), "256 bytes long"},
		{"byte order mark", "\ufeff[client]\nserver-addr = \"x:1\"\n", 1, "client.token", "one of token or token-file is required"},
		{"CRLF line ends", "\ufeff[client]\r\ntoken = \"t\"\r\n[client.sources.s]\r\naddr = \":1\"\r\nroute = \"up\"\r\n", 5, "client.sources.s.route", `"up" is not one of`},
		{"line after multi-line string", with(clientHead,
			`status-addr = """`, `[not.a.table]`, `x = 1"""`, `# [nor.this]`, `direct-addr = "nope"`),
			7, "client.direct-addr", "is not a host:port address"},
		{"line after multi-line array", with(serverHead[:3],
			`tokens = [`, `  "a", # ]`, `  "[server.ip-restriction]",`, `]`, `relay-addr = "nope"`),
			8, "server.relay-addr", "is not a host:port address"},
		{"unknown key after multi-line inline table", with(clientHead,
			`sources.web = {`, `  addr = ":1", # }`, `  route = "any",`, `}`, `unknown = 1`),
			7, "client.unknown", "unknown key"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inTempDir(t, stdFiles)
			write(t, "bad.toml", tt.toml)
			f, err := Load("bad.toml")
			if f != nil {
				t.Errorf("Load returned a config along with error %v", err)
			}
			wantErr(t, err, "bad.toml", tt.line, tt.key, tt.msg)
		})
	}
}

func TestLoadUnreadableFile(t *testing.T) {
	inTempDir(t, nil)
	_, err := Load("missing.toml")
	wantErr(t, err, "missing.toml", 0, "", "no such file or directory")
}

// Several problems are all reported, one per line, in file order for keys of
// the same table.
func TestLoadReportsAllProblems(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "bad.toml", doc(
		`[client]`,
		`token = "t"`,
		`direct-addr = "nope"`,
		`[client.sources.a]`,
		`addr = ":1"`,
		`route = "x"`,
		`[client.sources.b]`,
		`route = "direct"`,
	))
	_, err := Load("bad.toml")
	want := []string{
		`bad.toml:3: client.direct-addr: "nope" is not a host:port address (missing port in address)`,
		`bad.toml:6: client.sources.a.route: "x" is not one of any, direct, relay`,
		`bad.toml:7: client.sources.b.addr: required but not set (set addr, or url)`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("got\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
}

// The url form resolves to the address and its protocol; validating the
// result again changes nothing (run-time endpoints are validated, stored
// and compared in that form).
func TestLoadEndpointURLs(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "c.toml", with(clientHead,
		`[client.destinations.dns]`, `url = "udp://127.0.0.1:53"`, `udp-idle-timeout = "90s"`, `udp-max-flows = 100`,
		`[client.destinations.web]`, `url = "tcp://localhost:80"`,
		`[client.sources.dns]`, `url = "udp://:5353"`, `route = "relay"`))
	f, err := Load("c.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Destination{Addr: "127.0.0.1:53", Route: "any", Proto: "udp",
		UDPFlows: UDPFlows{UDPIdleTimeout: "90s", UDPMaxFlows: 100, UDPIdle: 90 * time.Second}}
	if got := f.Client.Destinations["dns"]; got != want {
		t.Fatalf("dns destination %+v, want %+v", got, want)
	}
	if got := f.Client.Destinations["web"]; got != (Destination{Addr: "localhost:80", Route: "any"}) {
		t.Fatalf("web destination %+v: tcp:// is the same as addr", got)
	}
	src := f.Client.Sources["dns"]
	if src != (Source{Addr: ":5353", Route: "relay", Proto: "udp"}) {
		t.Fatalf("dns source %+v", src)
	}
	again := src
	if err := CheckSource("dns", &again); err != nil || again != src {
		t.Fatalf("validated again: %+v, %v; want it unchanged", again, err)
	}
}
