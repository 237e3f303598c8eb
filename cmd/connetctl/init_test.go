package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/connetd/connetd/config"
)

// runInit runs connetctl with no system bus reachable: init must not need one.
func runInit(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/connetctl-init-test")
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// noServiceGroup makes the connetd group missing, as on a machine without
// the package.
func noServiceGroup(t *testing.T) {
	t.Helper()
	old := lookupServiceGroup
	lookupServiceGroup = func() (int, error) { return 0, errors.New("unknown group connetd") }
	t.Cleanup(func() { lookupServiceGroup = old })
}

func mustInit(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runInit(t, args...)
	if code != exitOK {
		t.Fatalf("connetctl %q: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

func modeOf(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("%s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInitServerWritesFilesThatLoadWithTheirModes(t *testing.T) {
	noServiceGroup(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "etc")
	stdout := mustInit(t, "init", "server", "--public-addr", "127.0.0.1", "--out", out, "--port", "4100", "--relay-port", "4101", "--clients", "3")
	if !strings.Contains(stdout, filepath.Join(out, "clients", "client-1")) {
		t.Errorf("the output does not name the bundles' paths:\n%s", stdout)
	}

	for name, want := range map[string]os.FileMode{
		"server.toml": 0o644, "server.pem": 0o644, "server.key": 0o600, "server.tokens": 0o600,
		"clients/client-1/client.toml": 0o600, "clients/client-1/ca.pem": 0o644,
		"clients/client-3/client.toml": 0o600, "clients/client-1": 0o700,
	} {
		if got := modeOf(t, filepath.Join(out, name)); got != want {
			t.Errorf("%s: mode %04o, want %04o", name, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "clients", "client-4")); err == nil {
		t.Error("--clients 3 wrote a fourth bundle")
	}

	f, err := config.Load(filepath.Join(out, "server.toml"))
	if err != nil {
		t.Fatalf("server.toml does not load: %v", err)
	}
	s := f.Server
	if s == nil || s.Addr != ":4100" || s.RelayAddr != ":4101" || s.RelayHostname != "127.0.0.1" ||
		s.CertFile != filepath.Join(out, "server.pem") || s.KeyFile != filepath.Join(out, "server.key") ||
		s.TokensFile != filepath.Join(out, "server.tokens") {
		t.Fatalf("server.toml loads as %+v", s)
	}
	if s.StoreDir != os.Getenv("STATE_DIRECTORY") {
		t.Errorf("store-dir %q: it should be left to systemd's StateDirectory", s.StoreDir)
	}
	if len(s.TokenValues) != 3 {
		t.Fatalf("%d tokens, want 3", len(s.TokenValues))
	}
	seen := map[string]bool{}
	for _, tok := range s.TokenValues {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if len(tok) < 32 || err != nil || len(raw) != tokenBytes {
			t.Errorf("token %q: want ≥ 32 characters of base64url of %d random bytes", tok, tokenBytes)
		}
		if seen[tok] {
			t.Errorf("token %q is there twice", tok)
		}
		seen[tok] = true
	}

	// Each bundle loads where it lies (server-cas is relative to it) and
	// carries its own token and the server's address.
	serverPEM, _ := os.ReadFile(filepath.Join(out, "server.pem"))
	for i, tok := range s.TokenValues {
		bundle := filepath.Join(out, "clients", "client-"+string(rune('1'+i)))
		t.Chdir(bundle)
		c, err := config.Load(bundleConfig)
		if err != nil {
			t.Fatalf("bundle %s does not load: %v", bundle, err)
		}
		if c.Client == nil || c.Client.TokenValue != tok || c.Client.ServerAddr != "127.0.0.1:4100" || c.Client.ServerCAs != bundleCA {
			t.Errorf("bundle %s loads as %+v; want token %q", bundle, c.Client, tok)
		}
		if ca, _ := os.ReadFile(bundleCA); !bytes.Equal(ca, serverPEM) {
			t.Errorf("bundle %s: ca.pem is not the server's certificate", bundle)
		}
	}

	// Another run makes other tokens.
	out2 := filepath.Join(dir, "etc2")
	mustInit(t, "init", "server", "--public-addr", "127.0.0.1", "--out", out2)
	f2, err := config.Load(filepath.Join(out2, "server.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if f2.Server.Addr != ":19190" || f2.Server.RelayAddr != ":19191" || len(f2.Server.TokenValues) != defaultClients {
		t.Errorf("defaults: %+v", f2.Server)
	}
	for _, tok := range f2.Server.TokenValues {
		if seen[tok] {
			t.Errorf("token %q came out of two runs", tok)
		}
	}
}

// The certificate names the host as an IP address or a DNS name, and a
// TLS 1.3 client trusting ca.pem accepts the server's key pair for it, as
// connetd's clients do (daemon.serverTLS: the host of server-addr).
func TestInitServerCertificateNamesTheHostAndCompletesATLSHandshake(t *testing.T) {
	noServiceGroup(t)
	for _, c := range []struct{ arg, host string }{
		{"127.0.0.1", "127.0.0.1"},
		{"[2001:db8::7]", "2001:db8::7"},
		{"connet.example.com", "connet.example.com"},
	} {
		out := t.TempDir()
		mustInit(t, "init", "server", "--public-addr", c.arg, "--out", out, "--clients", "1")
		cert := readCert(t, filepath.Join(out, "server.pem"))
		if ip := net.ParseIP(c.host); ip != nil {
			if len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(ip) || len(cert.DNSNames) != 0 {
				t.Errorf("%s: SAN IPs %v DNS %v", c.arg, cert.IPAddresses, cert.DNSNames)
			}
		} else if len(cert.DNSNames) != 1 || cert.DNSNames[0] != c.host || len(cert.IPAddresses) != 0 {
			t.Errorf("%s: SAN IPs %v DNS %v", c.arg, cert.IPAddresses, cert.DNSNames)
		}
		if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok {
			t.Errorf("%s: key %T, want ECDSA", c.arg, cert.PublicKey)
		}
		f, err := config.Load(filepath.Join(out, "server.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if f.Server.RelayHostname != c.host {
			t.Errorf("%s: relay-hostname %q", c.arg, f.Server.RelayHostname)
		}
		handshake(t, out, c.host)
	}
}

func handshake(t *testing.T, out, host string) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(out, "server.pem"), filepath.Join(out, "server.key"))
	if err != nil {
		t.Fatalf("the daemon's tls.LoadX509KeyPair refuses the pair: %v", err)
	}
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(out, "clients", "client-1", bundleCA))
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("ca.pem holds no certificate")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	cli := tls.Client(b, &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS13})
	if err := cli.Handshake(); err != nil {
		t.Errorf("%s: client handshake: %v", host, err)
		a.Close()
	}
	<-errc
}

func TestInitRefusesToOverwriteWithoutForce(t *testing.T) {
	noServiceGroup(t)
	out := t.TempDir()
	mustInit(t, "init", "server", "--public-addr", "127.0.0.1", "--out", out)
	tokens, _ := os.ReadFile(filepath.Join(out, "server.tokens"))

	// One existing file is enough to write nothing at all.
	if err := os.Remove(filepath.Join(out, "server.toml")); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runInit(t, "init", "server", "--public-addr", "127.0.0.1", "--out", out)
	if code != exitFailed || !strings.Contains(errOut, filepath.Join(out, "server.pem")) || !strings.Contains(errOut, "--force") {
		t.Errorf("second init server: exit %d, %q; want exit %d naming server.pem and --force", code, errOut, exitFailed)
	}
	if _, err := os.Stat(filepath.Join(out, "server.toml")); err == nil {
		t.Error("a refused init server wrote server.toml")
	}
	if now, _ := os.ReadFile(filepath.Join(out, "server.tokens")); !bytes.Equal(now, tokens) {
		t.Error("a refused init server changed the tokens")
	}

	mustInit(t, "init", "server", "--public-addr", "127.0.0.1", "--out", out, "--force")
	if now, _ := os.ReadFile(filepath.Join(out, "server.tokens")); bytes.Equal(now, tokens) {
		t.Error("init server --force kept the old tokens")
	}

	inst := filepath.Join(out, "installed")
	bundle := filepath.Join(out, "clients", "client-1")
	mustInit(t, "init", "client", "--from", bundle, "--out", inst)
	_, errOut, code = runInit(t, "init", "client", "--from", bundle, "--out", inst)
	if code != exitFailed || !strings.Contains(errOut, filepath.Join(inst, "client.toml")) {
		t.Errorf("second init client: exit %d, %q; want exit %d naming client.toml", code, errOut, exitFailed)
	}
	mustInit(t, "init", "client", "--from", bundle, "--out", inst, "--force")
}

func TestInitClientInstallsABundleThatLoads(t *testing.T) {
	noServiceGroup(t)
	srv := t.TempDir()
	mustInit(t, "init", "server", "--public-addr", "127.0.0.1", "--out", srv, "--port", "4200", "--relay-port", "4201")
	sf, err := config.Load(filepath.Join(srv, "server.toml"))
	if err != nil {
		t.Fatal(err)
	}

	// A bundle copied elsewhere, with an endpoint added to it before
	// installing: the endpoint stays, server-cas moves.
	copied := filepath.Join(t.TempDir(), "client-2")
	if err := os.CopyFS(copied, os.DirFS(filepath.Join(srv, "clients", "client-2"))); err != nil {
		t.Fatal(err)
	}
	extra := "\n[client.destinations.web]\naddr = \"127.0.0.1:8080\"\n"
	cf, err := os.OpenFile(filepath.Join(copied, bundleConfig), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cf.WriteString(extra)
	cf.Close()

	inst := t.TempDir()
	stdout, errOut, code := runInit(t, "--json", "init", "client", "--from", copied, "--name", "web-dst", "--out", inst)
	if code != exitOK {
		t.Fatalf("init client: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "0600") {
		t.Errorf("no warning that the config is 0600 without the connetd group: %q", errOut)
	}
	var rep struct {
		Written []struct{ Path, Mode string } `json:"written"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || len(rep.Written) != 2 {
		t.Fatalf("--json output %q: %v", stdout, err)
	}
	toml, ca := filepath.Join(inst, "web-dst.toml"), filepath.Join(inst, "web-dst-ca.pem")
	if modeOf(t, toml) != 0o600 || modeOf(t, ca) != 0o644 {
		t.Errorf("modes %04o %04o, want 0600 0644", modeOf(t, toml), modeOf(t, ca))
	}
	f, err := config.Load(toml)
	if err != nil {
		t.Fatalf("installed config does not load: %v", err)
	}
	c := f.Client
	if c.ServerCAs != ca || c.ServerAddr != "127.0.0.1:4200" || c.TokenValue != sf.Server.TokenValues[1] {
		t.Errorf("installed client %+v", c)
	}
	if _, ok := c.Destinations["web"]; !ok {
		t.Error("the destination added to the bundle was lost")
	}

	// --from may name the bundle's file too; the default name is client.
	inst2 := t.TempDir()
	mustInit(t, "init", "client", "--from", filepath.Join(srv, "clients", "client-1", bundleConfig), "--out", inst2)
	if _, err := config.Load(filepath.Join(inst2, "client.toml")); err != nil {
		t.Errorf("client.toml: %v", err)
	}
}

// As root with the connetd group, secrets are 0640 root:connetd.
func TestInitGivesSecretsToTheServiceGroupAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	old := lookupServiceGroup
	const gid = 4242
	lookupServiceGroup = func() (int, error) { return gid, nil }
	t.Cleanup(func() { lookupServiceGroup = old })
	out := t.TempDir()
	_, errOut, code := runInit(t, "init", "server", "--public-addr", "127.0.0.1", "--out", out)
	if code != exitOK || errOut != "" {
		t.Fatalf("init server: exit %d, %q", code, errOut)
	}
	mustInit(t, "init", "client", "--from", filepath.Join(out, "clients", "client-1"), "--out", out, "--name", "c")
	for name, want := range map[string]os.FileMode{"server.key": 0o640, "server.tokens": 0o640, "c.toml": 0o640, "server.pem": 0o644, "server.toml": 0o644} {
		st, err := os.Stat(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		wantGid := uint32(0)
		if want == 0o640 {
			wantGid = gid
		}
		if st.Mode().Perm() != want || sys.Uid != 0 || sys.Gid != wantGid {
			t.Errorf("%s: %04o %d:%d, want %04o 0:%d", name, st.Mode().Perm(), sys.Uid, sys.Gid, want, wantGid)
		}
	}
	// The bundles stay private to whoever copies them.
	if got := modeOf(t, filepath.Join(out, "clients", "client-1", bundleConfig)); got != 0o600 {
		t.Errorf("bundle client.toml: %04o, want 0600", got)
	}
}

func TestInitUsageErrors(t *testing.T) {
	noServiceGroup(t)
	out := t.TempDir()
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"init"}, "expected"},
		{[]string{"init", "relay"}, "expected init server or init client"},
		{[]string{"init", "server", "--out", out}, "--public-addr"},
		{[]string{"init", "server", "--public-addr", "example.com:443", "--out", out}, "includes a port"},
		{[]string{"init", "server", "--public-addr", "bad name", "--out", out}, "neither"},
		{[]string{"init", "server", "--public-addr", "h", "--port", "7", "--relay-port", "7", "--out", out}, "two ports"},
		{[]string{"init", "server", "--public-addr", "h", "--clients", "0", "--out", out}, "--clients"},
		{[]string{"init", "server", "--public-addr", "h", "--port", "70000", "--out", out}, "--port"},
		{[]string{"init", "server", "--public-addr", "h", "--bogus", "1", "--out", out}, "unknown option"},
		{[]string{"init", "client", "--out", out}, "--from"},
		{[]string{"init", "client", "--from", out, "--name", "a.b", "--out", out}, "instance name"},
	} {
		_, errOut, code := runInit(t, c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.msg) {
			t.Errorf("%q: exit %d, %q; want exit %d about %q", c.args, code, errOut, exitUsage, c.msg)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("usage errors wrote %d files", len(entries))
	}
	// A directory that is not a bundle fails as an operation.
	_, errOut, code := runInit(t, "init", "client", "--from", out, "--out", out)
	if code != exitFailed || !strings.Contains(errOut, bundleConfig) {
		t.Errorf("init client from an empty directory: exit %d, %q", code, errOut)
	}
}
