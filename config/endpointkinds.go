package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// EndpointKind holds the keys of connet v0.15's endpoint kinds (tls, http,
// https, ws, wss and file URLs) and what validation resolves their url
// into. It is embedded in Source and Destination.
type EndpointKind struct {
	// CASFile is a PEM file of CAs: a tls/https destination verifies its
	// service against them (InsecureSkipVerify instead skips the check),
	// a tls/https/wss source requires client certificates they signed.
	CASFile string `toml:"cas-file"`
	// CertFile and KeyFile are a tls/https/wss source's server
	// certificate, or a tls/https destination's client certificate.
	CertFile string `toml:"cert-file"`
	KeyFile  string `toml:"key-file"`
	// DialTimeout is in milliseconds, as connet's: how long a destination
	// dials its service, or a source waits for a path to a destination.
	DialTimeout int `toml:"dial-timeout"`

	// Resolved by validation: the url's scheme when it is not tcp or udp
	// ("tls", "http", "https", "ws", "wss", "file"; "" for tcp and udp,
	// which Proto tells apart), and its path: the prefix of an http(s)
	// endpoint, the root directory of a file destination.
	Kind string `toml:"-"`
	Path string `toml:"-"`
}

// InsecureSkipVerify is the cas-file value that makes a tls or https
// destination accept any certificate its service shows.
const InsecureSkipVerify = "insecure-skip-verify"

// The schemes each role takes; tcp and udp are endpointProtos'.
var (
	destinationSchemes = []string{"tcp", "udp", "tls", "http", "https", "file"}
	sourceSchemes      = []string{"tcp", "udp", "tls", "http", "https", "ws", "wss"}
)

// endpointKind resolves an endpoint's addr or url, as endpointAddr does for
// tcp and udp, and checks the keys of its kind. dest tells a destination
// from a source.
func (v *validator) endpointKind(ep keyPath, dest bool, addr, rawURL, proto *string, k *EndpointKind, serverName string) {
	raw := *rawURL
	switch {
	case raw == "" && k.Kind == "file" && *addr == "" && k.Path != "":
		// A file destination validated before: its root is in Path.
	case raw == "" || !strings.Contains(raw, "://") && !strings.HasPrefix(raw, "file:"):
		v.endpointAddr(ep, addr, rawURL, proto)
	default:
		scheme, _, _ := strings.Cut(raw, ":")
		schemes := sourceSchemes
		if dest {
			schemes = destinationSchemes
		}
		if !slices.Contains(schemes, scheme) {
			v.fail(ep.key("url"), nil, "%q: scheme %q is not one of %s (for a %s)", raw, scheme, strings.Join(schemes, ", "), roleName(dest))
			return
		}
		switch scheme {
		case "tcp", "udp":
			v.endpointAddr(ep, addr, rawURL, proto)
			k.Kind, k.Path = "", ""
		case "file":
			if *addr != "" {
				v.fail(ep.key("url"), nil, "set addr or url, not both")
				return
			}
			root, err := fileRoot(raw)
			if err != nil {
				v.fail(ep.key("url"), err, "%q: %v", raw, err)
				return
			}
			*rawURL, *proto, k.Kind, k.Path = "", "", "file", root
		default:
			if *addr != "" {
				v.fail(ep.key("url"), nil, "set addr or url, not both")
				return
			}
			hostport, path, err := parseKindURL(raw, scheme)
			if err != nil {
				v.fail(ep.key("url"), err, "%q: %v", raw, err)
				return
			}
			*addr, *rawURL, *proto, k.Kind, k.Path = hostport, "", "", scheme, path
		}
	}
	v.kindKeys(ep, dest, *proto, k, serverName)
}

// parseKindURL splits scheme://host:port/path; only http and https take a
// path.
func parseKindURL(raw, scheme string) (hostport, path string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("not a URL: %w", err)
	}
	if u.Opaque != "" || u.Host == "" {
		return "", "", fmt.Errorf("want %s://HOST:PORT", scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("a %s:// endpoint takes no user, query or fragment", scheme)
	}
	if err := checkAddr(u.Host); err != nil {
		return "", "", fmt.Errorf("%q is not a host:port address (%v)", u.Host, err)
	}
	path = u.Path
	if scheme != "http" && scheme != "https" {
		if path != "" && path != "/" {
			return "", "", fmt.Errorf("a %s:// endpoint takes no path", scheme)
		}
		path = ""
	}
	return u.Host, path, nil
}

// fileRoot is the directory of file:///abs/path or file:./rel/path, the
// latter taken from the daemon's working directory and made absolute.
func fileRoot(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("not a URL: %w", err)
	}
	if u.Host != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("want file:///ABSOLUTE/PATH or file:./RELATIVE/PATH")
	}
	p := u.Path
	if u.Opaque != "" {
		p = u.Opaque
	}
	if p == "" {
		return "", errors.New("no directory: want file:///ABSOLUTE/PATH or file:./RELATIVE/PATH")
	}
	return filepath.Abs(expandPath(p))
}

// kindKeys checks the keys that apply to some kinds only, and that the
// files they name can be used.
func (v *validator) kindKeys(ep keyPath, dest bool, proto string, k *EndpointKind, serverName string) {
	kind := k.Kind
	if kind == "" {
		kind = "tcp"
		if proto == "udp" {
			kind = "udp"
		}
	}
	tlsKind := kind == "tls" || kind == "https" || kind == "wss"
	notFor := func(key string, set bool) {
		if set {
			v.fail(ep.key(key), nil, "does not apply to a %s:// %s", kind, roleName(dest))
		}
	}
	k.CASFile, k.CertFile, k.KeyFile = expandPath(k.CASFile), expandPath(k.CertFile), expandPath(k.KeyFile)
	notFor("cas-file", k.CASFile != "" && !tlsKind)
	notFor("cert-file", k.CertFile != "" && !tlsKind)
	notFor("key-file", k.KeyFile != "" && !tlsKind)
	notFor("server-name", serverName != "" && (!dest || !tlsKind))
	notFor("dial-timeout", k.DialTimeout != 0 && (kind == "udp" || kind == "file"))
	if k.DialTimeout < 0 {
		v.fail(ep.key("dial-timeout"), nil, "%d is negative: give milliseconds, or 0 for the default", k.DialTimeout)
	}
	if !tlsKind {
		return
	}
	switch {
	case k.CertFile != "" && k.KeyFile == "":
		v.fail(ep.key("key-file"), nil, "required with cert-file")
	case k.KeyFile != "" && k.CertFile == "":
		v.fail(ep.key("cert-file"), nil, "required with key-file")
	case k.CertFile == "" && !dest:
		v.fail(ep.key("cert-file"), nil, "required: a %s:// source needs a server certificate (and key-file)", kind)
	case k.CertFile != "":
		if _, err := tls.LoadX509KeyPair(k.CertFile, k.KeyFile); err != nil {
			v.fail(ep.key("cert-file"), err, "cannot load the certificate and key: %v", err)
		}
	}
	switch {
	case k.CASFile == InsecureSkipVerify && !dest:
		v.fail(ep.key("cas-file"), nil, "%q is for destinations: a source verifies client certificates only against CAs", InsecureSkipVerify)
	case k.CASFile != "" && k.CASFile != InsecureSkipVerify:
		if _, err := LoadCAs(k.CASFile); err != nil {
			v.fail(ep.key("cas-file"), err, "%v", err)
		}
	}
}

func roleName(dest bool) string {
	if dest {
		return "destination"
	}
	return "source"
}

// LoadCAs reads a PEM file of CA certificates.
func LoadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// EndpointURL is how an endpoint is shown (connetctl, D-Bus): its URL when
// it has a kind, else addr as endpointAddr left it.
func EndpointURL(addr string, k EndpointKind) string {
	switch k.Kind {
	case "":
		return addr
	case "file":
		return "file://" + k.Path
	}
	return k.Kind + "://" + addr + k.Path
}

// destinationKind checks the keys of a destination that only plain tcp (and
// tls) destinations take.
func (v *validator) destinationKind(ep keyPath, d *Destination) {
	if d.Kind == "" {
		return
	}
	if d.ProxyProtoVersion != "" && d.Kind != "tls" {
		v.fail(ep.key("proxy-proto-version"), nil, "PROXY protocol applies only to tcp:// and tls:// destinations, not %s://", d.Kind)
	}
	if d.FileServerRoot != "" {
		v.fail(ep.key("file-server-root"), nil, "applies only to a tcp destination (addr); a %s:// destination cannot also be a file server", d.Kind)
	}
}
