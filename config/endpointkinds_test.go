package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/connetd/connetd/internal/testcert"
)

// kindFiles are stdFiles with a usable certificate, key and CA file.
func kindFiles(t *testing.T) map[string]string {
	t.Helper()
	c, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"tls.pem": string(c.PEM), "tls.key": string(c.Key), "ca.pem": string(c.PEM)}
	for k, v := range stdFiles {
		files[k] = v
	}
	return files
}

func TestEndpointKindErrors(t *testing.T) {
	dst := func(more ...string) string {
		return with(clientHead, append([]string{`[client.destinations.web]`}, more...)...)
	}
	src := func(more ...string) string {
		return with(clientHead, append([]string{`[client.sources.web]`}, more...)...)
	}
	tests := []struct {
		name, toml string
		line       int
		key, msg   string
	}{
		{"unknown scheme", dst(`url = "gopher://h:70"`), 4, "client.destinations.web.url", `scheme "gopher" is not one of tcp, udp, tls, http, https, file`},
		{"ws destination", dst(`url = "ws://h:80"`), 4, "client.destinations.web.url", `scheme "ws" is not one of`},
		{"file source", src(`url = "file:///srv"`), 4, "client.sources.web.url", `scheme "file" is not one of tcp, udp, tls, http, https, ws, wss`},
		{"missing port", dst(`url = "https://example.com/x"`), 4, "client.destinations.web.url", "missing port"},
		{"path on tls", dst(`url = "tls://h:443/x"`), 4, "client.destinations.web.url", "a tls:// endpoint takes no path"},
		{"path on ws", src(`url = "ws://:80/x"`), 4, "client.sources.web.url", "a ws:// endpoint takes no path"},
		{"query on http", dst(`url = "http://h:80/x?y=1"`), 4, "client.destinations.web.url", "no user, query or fragment"},
		{"file with host", dst(`url = "file://host/srv"`), 4, "client.destinations.web.url", "want file:///ABSOLUTE/PATH"},
		{"addr and kind url", dst(`addr = ":80"`, `url = "http://h:80"`), 5, "client.destinations.web.url", "set addr or url, not both"},
		{"tls source without cert", src(`url = "tls://:443"`), 3, "client.sources.web.cert-file", "required: a tls:// source needs a server certificate"},
		{"wss source without cert", src(`url = "wss://:443"`), 3, "client.sources.web.cert-file", "required"},
		{"cert without key", dst(`url = "tls://h:443"`, `cert-file = "tls.pem"`), 3, "client.destinations.web.key-file", "required with cert-file"},
		{"key without cert", src(`url = "https://:443"`, `key-file = "tls.key"`), 3, "client.sources.web.cert-file", "required with key-file"},
		{"unreadable cert", src(`url = "https://:443"`, `cert-file = "nope.pem"`, `key-file = "tls.key"`), 5, "client.sources.web.cert-file", "no such file"},
		{"unparsable cert", src(`url = "https://:443"`, `cert-file = "cert.pem"`, `key-file = "key.pem"`), 5, "client.sources.web.cert-file", "cannot load"},
		{"unreadable cas", dst(`url = "https://h:443"`, `cas-file = "nope.pem"`), 5, "client.destinations.web.cas-file", "no such file"},
		{"cas without certificates", dst(`url = "tls://h:443"`, `cas-file = "empty.txt"`), 5, "client.destinations.web.cas-file", "holds no PEM certificate"},
		{"insecure on a source", src(`url = "tls://:443"`, `cert-file = "tls.pem"`, `key-file = "tls.key"`, `cas-file = "insecure-skip-verify"`), 7, "client.sources.web.cas-file", "is for destinations"},
		{"cas on tcp", dst(`url = "tcp://h:80"`, `cas-file = "ca.pem"`), 5, "client.destinations.web.cas-file", "does not apply to a tcp:// destination"},
		{"cert on http source", src(`url = "http://:80"`, `cert-file = "tls.pem"`, `key-file = "tls.key"`), 5, "client.sources.web.cert-file", "does not apply to a http:// source"},
		{"server-name on http", dst(`url = "http://h:80"`, `server-name = "x"`), 5, "client.destinations.web.server-name", "does not apply"},
		{"dial-timeout on file", dst(`url = "file:///srv"`, `dial-timeout = 100`), 5, "client.destinations.web.dial-timeout", "does not apply to a file:// destination"},
		{"dial-timeout on udp", src(`url = "udp://:53"`, `dial-timeout = 100`), 5, "client.sources.web.dial-timeout", "does not apply to a udp:// source"},
		{"negative dial-timeout", dst(`url = "tcp://h:80"`, `dial-timeout = -1`), 5, "client.destinations.web.dial-timeout", "is negative"},
		{"proxy protocol on http", dst(`url = "http://h:80"`, `proxy-proto-version = "v1"`), 5, "client.destinations.web.proxy-proto-version", "only to tcp:// and tls://"},
		{"file server on http", dst(`url = "http://h:80"`, `file-server-root = "/srv"`), 5, "client.destinations.web.file-server-root", "applies only to a tcp destination"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inTempDir(t, kindFiles(t))
			write(t, "bad.toml", tt.toml)
			f, err := Load("bad.toml")
			if f != nil {
				t.Errorf("Load returned a config along with error %v", err)
			}
			wantErr(t, err, "bad.toml", tt.line, tt.key, tt.msg)
		})
	}
}

func TestEndpointKindsLoad(t *testing.T) {
	inTempDir(t, kindFiles(t))
	write(t, "ok.toml", with(clientHead,
		`[client.destinations.a]`, `url = "tls://svc.example:443"`, `cas-file = "ca.pem"`, `cert-file = "tls.pem"`, `key-file = "tls.key"`, `server-name = "svc"`, `dial-timeout = 2500`, `proxy-proto-version = "v2"`,
		`[client.destinations.b]`, `url = "https://svc:8443/api"`, `cas-file = "insecure-skip-verify"`,
		`[client.destinations.c]`, `url = "file:./www"`,
		`[client.destinations.d]`, `url = "file:///srv/www"`,
		`[client.destinations.e]`, `addr = ":80"`, `file-server-root = "/srv"`,
		`[client.sources.a]`, `url = "tls://:443"`, `cert-file = "tls.pem"`, `key-file = "tls.key"`, `cas-file = "ca.pem"`,
		`[client.sources.b]`, `url = "http://127.0.0.1:8080/app"`, `dial-timeout = 100`,
		`[client.sources.c]`, `url = "wss://:8443"`, `cert-file = "tls.pem"`, `key-file = "tls.key"`,
		`[client.sources.d]`, `url = "ws://:8081/"`,
	))
	f, err := Load("ok.toml")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	c := f.Client
	for name, want := range map[string][3]string{
		"a": {"svc.example:443", "tls", ""}, "b": {"svc:8443", "https", "/api"},
		"c": {"", "file", filepath.Join(wd, "www")}, "d": {"", "file", "/srv/www"}, "e": {":80", "", ""},
	} {
		d := c.Destinations[name]
		if got := [3]string{d.Addr, d.Kind, d.Path}; got != want || d.URL != "" || d.Proto != "" {
			t.Errorf("destination %s: %q (url %q, proto %q), want %q", name, got, d.URL, d.Proto, want)
		}
		// Validated again (a run-time endpoint from the store), it is the same.
		again := d
		if err := CheckDestination(name, &again); err != nil || again != d {
			t.Errorf("destination %s validated again: %v, %+v", name, err, again)
		}
	}
	if d := c.Destinations["a"]; d.DialTimeout != 2500 || d.ServerName != "svc" {
		t.Errorf("destination a: %+v", d)
	}
	for name, want := range map[string][3]string{
		"a": {":443", "tls", ""}, "b": {"127.0.0.1:8080", "http", "/app"}, "c": {":8443", "wss", ""}, "d": {":8081", "ws", ""},
	} {
		s := c.Sources[name]
		if got := [3]string{s.Addr, s.Kind, s.Path}; got != want || s.URL != "" || s.Proto != "" {
			t.Errorf("source %s: %q, want %q", name, got, want)
		}
		again := s
		if err := CheckSource(name, &again); err != nil || again != s {
			t.Errorf("source %s validated again: %v, %+v", name, err, again)
		}
	}
	if got := EndpointURL(c.Sources["b"].Addr, c.Sources["b"].EndpointKind); got != "http://127.0.0.1:8080/app" {
		t.Errorf("EndpointURL: %s", got)
	}
}
