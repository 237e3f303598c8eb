package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/connetd/connetd/config"
)

// "connetctl init" writes configuration files; it runs before any daemon
// exists, so it never connects to the bus.

const (
	defaultConfDir  = "/etc/connet"
	defaultPort     = 19190
	defaultRelay    = 19191
	defaultClients  = 2
	maxInitClients  = 1000
	certValidity    = 10 * 365 * 24 * time.Hour
	tokenBytes      = 32 // 43 characters of base64url
	bundleConfig    = "client.toml"
	bundleCA        = "ca.pem"
	serviceGroup    = "connetd"
	initServerUsage = "init server --public-addr HOST [--out DIR] [--port N] [--relay-port N] [--clients N] [--force]"
	initClientUsage = "init client --from BUNDLE [--name NAME] [--out DIR] [--force]"
)

// lookupServiceGroup finds the group the daemon runs as (Group=connetd);
// a variable so that tests can stand in for it.
var lookupServiceGroup = func() (int, error) {
	g, err := user.LookupGroup(serviceGroup)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// secretOwner decides how secret files (key, tokens, client configs) are
// owned: 0640 root:connetd so that connetd@.service (User=connetd) reads
// them, or 0600 for whoever runs connetctl, with a warning saying why.
type secretOwner struct {
	gid  int // -1: leave the owner alone
	mode fs.FileMode
	warn string
}

func ownerForSecrets() secretOwner {
	if os.Geteuid() != 0 {
		return secretOwner{gid: -1, mode: 0o600, warn: fmt.Sprintf(
			"not running as root: secret files are 0600 and owned by you; connetd@.service (User=%s) cannot read them until you run chown root:%s and chmod 0640 on them",
			serviceGroup, serviceGroup)}
	}
	gid, err := lookupServiceGroup()
	if err != nil {
		return secretOwner{gid: -1, mode: 0o600, warn: fmt.Sprintf(
			"group %s does not exist (is the package installed?): secret files are 0600 root:root; connetd@.service cannot read them until you run chown root:%s and chmod 0640 on them",
			serviceGroup, serviceGroup)}
	}
	return secretOwner{gid: gid, mode: 0o640}
}

// outFile is one file to write.
type outFile struct {
	path   string
	data   []byte
	mode   fs.FileMode
	secret bool // mode and group from secretOwner
	what   string
}

// flagsWithForce is flags plus the boolean --force.
func flagsWithForce(args []string, allowed ...string) (map[string]string, []string, bool, error) {
	var rest []string
	force := false
	for _, a := range args {
		if a == "--force" || a == "-f" {
			force = true
			continue
		}
		rest = append(rest, a)
	}
	opts, pos, err := flags(rest, allowed...)
	return opts, pos, force, err
}

func cmdInit(e *env, args []string) error {
	if len(args) == 0 {
		return fail(exitUsage, "expected: %s, or %s", initServerUsage, initClientUsage)
	}
	switch args[0] {
	case "server":
		return initServer(e, args[1:])
	case "client":
		return initClient(e, args[1:])
	}
	return fail(exitUsage, "init %q: expected init server or init client", args[0])
}

func intFlag(opts map[string]string, key string, def, lo, hi int) (int, error) {
	s, ok := opts[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fail(exitUsage, "--%s %q: expected a number from %d to %d", key, s, lo, hi)
	}
	return n, nil
}

// publicHost checks --public-addr: a host name or IP address without port.
func publicHost(s string) (host string, ip net.IP, err error) {
	if s == "" {
		return "", nil, fail(exitUsage, "init server needs --public-addr HOST: the name or address clients reach this server at")
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	if ip := net.ParseIP(s); ip != nil {
		return ip.String(), ip, nil
	}
	if _, _, err := net.SplitHostPort(s); err == nil {
		return "", nil, fail(exitUsage, "--public-addr %q includes a port; give the host only, and the port with --port", s)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$`).MatchString(s) || len(s) > 253 {
		return "", nil, fail(exitUsage, "--public-addr %q is neither an IP address nor a DNS name", s)
	}
	return strings.TrimSuffix(s, "."), nil, nil
}

func outDir(opts map[string]string) (string, error) {
	dir := defaultConfDir
	if d, ok := opts["out"]; ok {
		dir = d
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fail(exitUsage, "--out %q: %v", dir, err)
	}
	return abs, nil
}

func initServer(e *env, args []string) error {
	opts, pos, force, err := flagsWithForce(args, "public-addr", "out", "port", "relay-port", "clients")
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fail(exitUsage, "unexpected %q; expected %s", pos[0], initServerUsage)
	}
	host, ip, err := publicHost(opts["public-addr"])
	if err != nil {
		return err
	}
	port, err := intFlag(opts, "port", defaultPort, 1, 65535)
	if err != nil {
		return err
	}
	relayPort, err := intFlag(opts, "relay-port", defaultRelay, 1, 65535)
	if err != nil {
		return err
	}
	if port == relayPort {
		return fail(exitUsage, "--port and --relay-port are both %d; the server needs two ports", port)
	}
	n, err := intFlag(opts, "clients", defaultClients, 1, maxInitClients)
	if err != nil {
		return err
	}
	out, err := outDir(opts)
	if err != nil {
		return err
	}

	certPEM, keyPEM, err := selfSignedCert(host, ip)
	if err != nil {
		return fail(exitFailed, "make the certificate: %v", err)
	}
	tokens := make([]string, n)
	for i := range tokens {
		if tokens[i], err = newToken(); err != nil {
			return fail(exitFailed, "make a token: %v", err)
		}
	}
	now := time.Now().UTC().Format(time.DateOnly)
	certFile, keyFile := filepath.Join(out, "server.pem"), filepath.Join(out, "server.key")
	tokensFile, serverFile := filepath.Join(out, "server.tokens"), filepath.Join(out, "server.toml")

	var tb strings.Builder
	fmt.Fprintf(&tb, "# connetd client tokens, one per line (connetctl init server, %s).\n", now)
	for i, tok := range tokens {
		fmt.Fprintf(&tb, "# client-%d\n%s\n", i+1, tok)
	}
	serverTOML := fmt.Sprintf(`# connetd server for %[1]s (connetctl init server, %[2]s).
# Start it with: systemctl enable --now connetd@server
# store-dir is left out: systemd's StateDirectory= (/var/lib/connetd/server) is used.
[server]
addr = %[3]s
relay-addr = %[4]s
relay-hostname = %[5]s
cert-file = %[6]s
key-file = %[7]s
tokens-file = %[8]s
`, host, now, tomlString(":"+strconv.Itoa(port)), tomlString(":"+strconv.Itoa(relayPort)), tomlString(host),
		tomlString(certFile), tomlString(keyFile), tomlString(tokensFile))

	files := []outFile{
		{path: serverFile, data: []byte(serverTOML), mode: 0o644, what: "server configuration"},
		{path: certFile, data: certPEM, mode: 0o644, what: "certificate for " + host + ", valid " + strconv.Itoa(int(certValidity/(365*24*time.Hour))) + " years"},
		{path: keyFile, data: keyPEM, secret: true, what: "the certificate's key"},
		{path: tokensFile, data: []byte(tb.String()), secret: true, what: strconv.Itoa(n) + " client tokens"},
	}
	serverAddr := net.JoinHostPort(host, strconv.Itoa(port))
	var bundles []string
	for i, tok := range tokens {
		name := fmt.Sprintf("client-%d", i+1)
		dir := filepath.Join(out, "clients", name)
		bundles = append(bundles, dir)
		clientTOML := fmt.Sprintf(`# connetd client bundle %[1]s for the server %[2]s (connetctl init server, %[3]s).
%[7]s[client]
token = %[4]s
server-addr = %[5]s
server-cas = %[6]s
`, name, serverAddr, now, tomlString(tok), tomlString(serverAddr), tomlString(bundleCA), installHint)
		// A bundle is copied to another machine by whoever runs this:
		// private to them, whatever the daemon's group.
		files = append(files,
			outFile{path: filepath.Join(dir, bundleConfig), data: []byte(clientTOML), mode: 0o600, what: "client bundle " + name},
			outFile{path: filepath.Join(dir, bundleCA), data: certPEM, mode: 0o644, what: "the server's certificate for " + name})
	}
	owner := ownerForSecrets()
	if err := writeFiles(files, force, owner); err != nil {
		return err
	}
	// What was written must be what connetd accepts.
	if _, err := config.Load(serverFile); err != nil {
		return fail(exitFailed, "the written %s does not load: %v", serverFile, err)
	}

	next := []string{}
	if out == defaultConfDir {
		next = append(next, "start the server: systemctl enable --now connetd@server")
	} else {
		next = append(next, "start the server: connetd server --config "+serverFile)
	}
	next = append(next, fmt.Sprintf("open UDP ports %d (clients) and %d (relay) to the clients", port, relayPort),
		"copy each bundle to its client (e.g. scp -r "+bundles[0]+" CLIENT:) and run there: connetctl init client --from "+filepath.Base(bundles[0])+" [--name NAME]")
	return report(e, files, owner, bundles, next)
}

func initClient(e *env, args []string) error {
	opts, pos, force, err := flagsWithForce(args, "from", "name", "out")
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fail(exitUsage, "unexpected %q; expected %s", pos[0], initClientUsage)
	}
	from := opts["from"]
	if from == "" {
		return fail(exitUsage, "init client needs --from BUNDLE: a directory written by connetctl init server (clients/client-N)")
	}
	name := "client"
	if n, ok := opts["name"]; ok {
		name = n
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]+$`).MatchString(name) {
		return fail(exitUsage, "--name %q: an instance name may only hold letters, digits, - and _", name)
	}
	out, err := outDir(opts)
	if err != nil {
		return err
	}

	bundleFile := from
	if st, err := os.Stat(from); err != nil {
		return fail(exitFailed, "bundle: %v", err)
	} else if st.IsDir() {
		bundleFile = filepath.Join(from, bundleConfig)
	}
	text, err := os.ReadFile(bundleFile)
	if err != nil {
		return fail(exitFailed, "bundle: %v", err)
	}
	var b struct {
		Client *struct {
			ServerCAs string `toml:"server-cas"`
		} `toml:"client"`
	}
	if _, err := toml.Decode(string(text), &b); err != nil {
		return fail(exitFailed, "bundle %s: %v", bundleFile, err)
	}
	if b.Client == nil || b.Client.ServerCAs == "" {
		return fail(exitFailed, "bundle %s has no [client] table with server-cas; is it a bundle of connetctl init server?", bundleFile)
	}
	caSrc := b.Client.ServerCAs
	if !filepath.IsAbs(caSrc) {
		caSrc = filepath.Join(filepath.Dir(bundleFile), caSrc)
	}
	caPEM, err := os.ReadFile(caSrc)
	if err != nil {
		return fail(exitFailed, "bundle %s: server-cas: %v", bundleFile, err)
	}
	tomlFile, caFile := filepath.Join(out, name+".toml"), filepath.Join(out, name+"-ca.pem")
	installed, err := setServerCAs(string(text), caFile)
	if err != nil {
		return fail(exitFailed, "bundle %s: %v", bundleFile, err)
	}
	installed = strings.Replace(installed, installHint,
		"# Installed by connetctl init client from "+filepath.Dir(bundleFile)+" ("+time.Now().UTC().Format(time.DateOnly)+").\n", 1)
	// Check it before installing anything: the same text, in a scratch
	// directory, pointing at the bundle's certificate.
	if err := checkClient(name, string(text), caSrc); err != nil {
		return fail(exitFailed, "bundle %s does not load: %v", bundleFile, err)
	}
	files := []outFile{
		{path: tomlFile, data: []byte(installed), secret: true, what: "client configuration (holds its token)"},
		{path: caFile, data: caPEM, mode: 0o644, what: "the server's certificate"},
	}
	owner := ownerForSecrets()
	if err := writeFiles(files, force, owner); err != nil {
		return err
	}
	if _, err := config.Load(tomlFile); err != nil {
		return fail(exitFailed, "the installed %s does not load: %v", tomlFile, err)
	}
	next := []string{"add destinations or sources to " + tomlFile + " (or later with connetctl add-destination / add-source)"}
	if out == defaultConfDir {
		next = append(next, "start it: systemctl enable --now connetd@"+name)
	} else {
		next = append(next, "start it: connetd --config "+tomlFile)
	}
	return report(e, files, owner, nil, next)
}

// installHint is the bundle's line that init client replaces.
const installHint = "# Install it on the client with: connetctl init client --from DIR [--name NAME]\n"

var serverCAsLine = regexp.MustCompile(`(?m)^[ \t]*server-cas[ \t]*=.*$`)

// setServerCAs points the bundle's server-cas line at path, keeping every
// other line (comments, endpoints someone added to the bundle) as it is.
func setServerCAs(text, path string) (string, error) {
	if n := len(serverCAsLine.FindAllStringIndex(text, -1)); n != 1 {
		return "", fmt.Errorf("expected one server-cas = line, found %d", n)
	}
	return serverCAsLine.ReplaceAllLiteralString(text, "server-cas = "+tomlString(path)), nil
}

func checkClient(name, text, caPath string) error {
	dir, err := os.MkdirTemp("", "connetctl-init-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	checked, err := setServerCAs(text, caPath)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, name+".toml")
	if err := os.WriteFile(path, []byte(checked), 0o600); err != nil {
		return err
	}
	f, err := config.Load(path)
	if err != nil {
		return err
	}
	if f.Client == nil {
		return errors.New("it is not a client configuration (no [client] table)")
	}
	return nil
}

// writeFiles writes all files or, when one exists and force is not given,
// none. Each is written to a temporary file and renamed into place.
func writeFiles(files []outFile, force bool, owner secretOwner) error {
	if !force {
		for _, f := range files {
			if _, err := os.Lstat(f.path); err == nil {
				return fail(exitFailed, "%s exists; not overwriting it (pass --force to replace it); nothing was written", f.path)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fail(exitFailed, "%v", err)
			}
		}
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return fail(exitFailed, "%v", err)
		}
	}
	// Bundle directories hold a token: private to whoever copies them.
	for _, f := range files {
		if filepath.Base(f.path) == bundleConfig {
			if err := os.Chmod(filepath.Dir(f.path), 0o700); err != nil {
				return fail(exitFailed, "%v", err)
			}
		}
	}
	for _, f := range files {
		if err := writeFile(f, owner); err != nil {
			return fail(exitFailed, "write %s: %v", f.path, err)
		}
	}
	return nil
}

func writeFile(f outFile, owner secretOwner) error {
	tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	mode := f.mode
	if f.secret {
		mode = owner.mode
		if owner.gid >= 0 {
			if err := tmp.Chown(0, owner.gid); err != nil {
				tmp.Close()
				return err
			}
		}
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(f.data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.path)
}

// report says what was written, how secrets are owned and what to do next.
func report(e *env, files []outFile, owner secretOwner, bundles, next []string) error {
	if owner.warn != "" {
		fmt.Fprintln(e.stderr, "connetctl: warning:", owner.warn)
	}
	type written struct {
		Path  string `json:"path"`
		Mode  string `json:"mode"`
		Owner string `json:"owner,omitempty"`
		What  string `json:"what"`
	}
	var ws []written
	for _, f := range files {
		w := written{Path: f.path, Mode: fmt.Sprintf("%04o", f.mode), What: f.what}
		if f.secret {
			w.Mode = fmt.Sprintf("%04o", owner.mode)
			if owner.gid >= 0 {
				w.Owner = "root:" + serviceGroup
			}
		}
		ws = append(ws, w)
	}
	if e.g.json {
		v := map[string]any{"written": ws, "next": next}
		if bundles != nil {
			v["bundles"] = bundles
		}
		if owner.warn != "" {
			v["warning"] = owner.warn
		}
		return e.printJSON(v)
	}
	var b strings.Builder
	for _, w := range ws {
		own := ""
		if w.Owner != "" {
			own = " " + w.Owner
		}
		fmt.Fprintf(&b, "wrote %s (%s%s): %s\n", w.Path, w.Mode, own, w.What)
	}
	b.WriteString("\nNext:\n")
	for _, n := range next {
		fmt.Fprintf(&b, "  - %s\n", n)
	}
	_, err := fmt.Fprint(e.stdout, b.String())
	return err
}

// newToken is 32 bytes from crypto/rand, as 43 characters of base64url.
func newToken() (string, error) {
	buf := make([]byte, tokenBytes)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// selfSignedCert makes an ECDSA P-256 certificate for host, which clients
// trust by naming it in server-cas: TLS 1.3 (quic-go) and every
// client's crypto/tls verify it, and openssl reads it.
func selfSignedCert(host string, ip net.IP) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"connetd"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
