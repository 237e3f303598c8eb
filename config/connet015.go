package config

import (
	"encoding/base32"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
)

// connet v0.15 renamed and regrouped keys of v0.5: listen addresses became
// lists of "ingress" tables, CA files gained a -file suffix. Both forms load;
// each v0.15 key is mapped onto the v0.5 key connetd runs with, and errors
// about the mapped value point at the v0.15 key that set it. What connetd
// cannot do is an error that says why, never silently dropped.

// Connet015Client holds connet v0.15's [client] keys.
type Connet015Client struct {
	ServerCAsFile string `toml:"server-cas-file"` // alias of server-cas
	// ServerName is the name the control server's certificate must carry,
	// when server-addr is an IP address or another name.
	ServerName string `toml:"server-name"`
	// A 32-byte key for stateless resets on the direct socket, so that
	// peers learn at once that a restarted client lost their connections.
	DirectStatelessResetKey     string `toml:"direct-stateless-reset-key"`
	DirectStatelessResetKeyFile string `toml:"direct-stateless-reset-key-file"`
	// NatPMP is "system", "dial" or "disabled"; it maps onto port-mapping.
	NatPMP string `toml:"nat-pmp"`
	// RelayEncryptions lists "none", "tls" and "dhxcp". connetd's relayed
	// paths are always end-to-end encrypted, which meets every one.
	RelayEncryptions []string `toml:"relay-encryptions"`

	// Resolved by validation: the key, nil when none is set.
	DirectResetKey *[32]byte `toml:"-"`
}

// Connet015Server holds connet v0.15's [server] keys.
type Connet015Server struct {
	Ingress               []ControlIngress `toml:"ingress"`
	RelayIngress          []RelayIngress   `toml:"relay-ingress"`
	EndpointExpiryTimeout string           `toml:"endpoint-expiry-timeout"`
	EndpointExpiryDisable *bool            `toml:"endpoint-expiry-disable"`
}

// Connet015Control holds connet v0.15's [control] keys.
type Connet015Control struct {
	ClientsIngress         []ControlIngress `toml:"clients-ingress"`
	RelaysIngress          []ControlIngress `toml:"relays-ingress"`
	RelaysTokenRestriction []IPRestriction  `toml:"relays-token-restriction"`
}

// Connet015Relay holds connet v0.15's [relay] keys.
type Connet015Relay struct {
	Ingress        []RelayIngress `toml:"ingress"`
	ControlCAsFile string         `toml:"control-cas-file"` // alias of control-cas
	// ControlName is the name the control server's certificate must carry.
	ControlName          string `toml:"control-name"`
	HandshakeIdleTimeout string `toml:"handshake-idle-timeout"`
	Metadata             string `toml:"metadata"`
}

// ControlIngress is one [[server.ingress]], [[control.clients-ingress]] or
// [[control.relays-ingress]] table.
type ControlIngress struct {
	Addr     string `toml:"addr"`
	CertFile string `toml:"cert-file"`
	KeyFile  string `toml:"key-file"`
	IPRestriction
}

// RelayIngress is one [[server.relay-ingress]] or [[relay.ingress]] table.
type RelayIngress struct {
	Addr      string   `toml:"addr"`
	Hostports []string `toml:"hostports"`
	IPRestriction
}

// EncryptionList is connet's relay-encryptions array of strings, kept as
// one comma-joined string so that endpoint structs stay comparable (a
// reload compares them to see what changed).
type EncryptionList string

// UnmarshalTOML takes an array of strings.
func (l *EncryptionList) UnmarshalTOML(v any) error {
	arr, ok := v.([]any)
	if !ok {
		return fmt.Errorf("expected an array of strings, found %T", v)
	}
	parts := make([]string, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			return fmt.Errorf("expected an array of strings, found a %T in it", e)
		}
		parts[i] = s
	}
	*l = EncryptionList(strings.Join(parts, ","))
	return nil
}

// List returns the modes.
func (l EncryptionList) List() []string {
	if l == "" {
		return nil
	}
	return strings.Split(string(l), ",")
}

// resetKeyEncoding is how connet writes a stateless reset key as text:
// base32 with DNSSEC's lower-case extended-hex alphabet, unpadded.
var resetKeyEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

func (v *validator) connet015(f *File) {
	if v.o.alias == nil {
		v.o.alias = map[string]keyPath{}
	}
	switch {
	case f.Client != nil:
		v.client015(f.Client)
	case f.Server != nil:
		v.server015(f.Server)
	case f.Control != nil:
		v.control015(f.Control)
	case f.Relay != nil:
		v.relay015(f.Relay)
	}
}

// refuse reports a key connetd cannot honour.
func (v *validator) refuse(p keyPath, why string) {
	v.fail(p, nil, "connetd cannot honour this connet key: %s", why)
}

// mapStr sets *dst, the v0.5 key to, from val, the v0.15 key from. Both set
// to different values is an error, since one would be silently dropped.
func (v *validator) mapStr(dst *string, to keyPath, val string, from keyPath, why string) {
	if val == "" {
		return
	}
	if *dst != "" && *dst != val {
		if why == "" {
			why = "both set the same thing; keep one"
		}
		v.fail(from, nil, "%q conflicts with %s = %q: %s", val, to, *dst, why)
		return
	}
	if *dst == "" {
		v.o.alias[to.String()] = from
	}
	*dst = val
}

func (v *validator) mapList(dst *[]string, to keyPath, val []string, from keyPath) {
	if len(val) == 0 {
		return
	}
	if len(*dst) > 0 && !slices.Equal(*dst, val) {
		v.fail(from, nil, "conflicts with %s: both set the same thing; keep one", to)
		return
	}
	if len(*dst) == 0 {
		v.o.alias[to.String()] = from
	}
	*dst = val
}

func (v *validator) client015(c *Client) {
	p := key("client")
	// connet's fallback when neither token nor token-file is set.
	if c.Token == "" && c.TokenFile == "" {
		c.Token = os.Getenv("CONNET_TOKEN")
	}
	v.mapStr(&c.ServerCAs, p.key("server-cas"), expandPath(c.ServerCAsFile), p.key("server-cas-file"), "")
	if c.ServerName != "" && strings.ContainsFunc(c.ServerName, func(r rune) bool { return r <= ' ' || r == ':' || r == '/' }) {
		v.fail(p.key("server-name"), nil, "%q is not a host name", c.ServerName)
	}

	switch c.NatPMP {
	case "":
	case "system", "dial", "disabled":
		want := "auto"
		if c.NatPMP == "disabled" {
			want = "off"
		}
		v.mapStr(&c.PortMapping, p.key("port-mapping"), want, p.key("nat-pmp"),
			fmt.Sprintf("nat-pmp = %q means port-mapping = %q", c.NatPMP, want))
	default:
		v.fail(p.key("nat-pmp"), nil, "%q is not one of system, dial, disabled", c.NatPMP)
	}

	c.DirectResetKey = v.resetKey(p, c.DirectStatelessResetKey, expandPath(c.DirectStatelessResetKeyFile))

	asked := v.relayEncryptions(p.key("relay-encryptions"), c.RelayEncryptions)
	for _, name := range slices.Sorted(maps.Keys(c.Destinations)) {
		asked = v.relayEncryptions(p.key("destinations").key(name).key("relay-encryptions"), c.Destinations[name].RelayEncryptions.List()) || asked
	}
	for _, name := range slices.Sorted(maps.Keys(c.Sources)) {
		asked = v.relayEncryptions(p.key("sources").key(name).key("relay-encryptions"), c.Sources[name].RelayEncryptions.List()) || asked
	}
	if asked {
		v.notes = append(v.notes, &Error{File: v.o.file, Key: "relay-encryptions",
			Msg: "accepted: connetd's relayed connections are always end-to-end encrypted (TLS 1.3 between the peers, which the relay cannot read), so each requested mode is met"})
	}
}

// relayEncryptions checks connet's list and tells whether one was given.
func (v *validator) relayEncryptions(p keyPath, l []string) bool {
	for _, e := range l {
		if !slices.Contains([]string{"none", "tls", "dhxcp"}, e) {
			v.fail(p, nil, "%q is not one of none, tls, dhxcp", e)
		}
	}
	return len(l) > 0
}

// resetKey reads the key from its file (32 raw bytes, or connet's text
// form) or from the inline text; the file wins, as in connet.
func (v *validator) resetKey(p keyPath, inline, file string) *[32]byte {
	var text string
	kp := p.key("direct-stateless-reset-key")
	switch {
	case file != "":
		kp = p.key("direct-stateless-reset-key-file")
		fh, err := os.Open(file)
		if err != nil {
			v.fail(kp, err, "%v", err)
			return nil
		}
		defer fh.Close()
		data, err := io.ReadAll(io.LimitReader(fh, 1024))
		if err != nil {
			v.fail(kp, err, "%v", err)
			return nil
		}
		if len(data) == 32 {
			var k [32]byte
			copy(k[:], data)
			return &k
		}
		text = string(data)
	case inline != "":
		text = inline
	default:
		return nil
	}
	b, err := resetKeyEncoding.DecodeString(strings.ToLower(strings.TrimSpace(text)))
	if err != nil || len(b) != 32 {
		v.fail(kp, err, "not a 32-byte key: give 32 raw bytes (file only) or connet's text form, 52 characters of base32 (0-9, a-v)")
		return nil
	}
	var k [32]byte
	copy(k[:], b)
	return &k
}

// oneIngress refuses a second ingress, since connetd listens on one address
// per service; the first is still mapped, so its errors are reported too.
func (v *validator) oneIngress(p keyPath, n int, what string) bool {
	if n > 1 {
		v.fail(p.at(1), nil, "connetd %s on one address only, and cannot honour %d ingresses; keep one", what, n)
	}
	return n >= 1
}

// relayIngress maps one relay ingress onto the listen address and the
// advertised host name.
func (v *validator) relayIngress(ip keyPath, in RelayIngress, addr *string, addrKey keyPath, defAddr string, host *string, hostKey keyPath) {
	v.mapStr(addr, addrKey, in.Addr, ip.key("addr"), "")
	if len(in.AllowCIDRs) > 0 || len(in.DenyCIDRs) > 0 {
		k := "allow-cidrs"
		if len(in.AllowCIDRs) == 0 {
			k = "deny-cidrs"
		}
		v.refuse(ip.key(k), "connetd's relay accepts only clients that control has authenticated and introduced, and has no IP restriction of its own; restrict clients where they meet control")
	}
	switch len(in.Hostports) {
	case 0:
		return
	case 1:
	default:
		v.refuse(ip.key("hostports"), fmt.Sprintf("connetd advertises one address per relay, and %d are given", len(in.Hostports)))
		return
	}
	hp := in.Hostports[0]
	h, port, err := net.SplitHostPort(hp)
	if err != nil {
		h, port = hp, ""
	}
	if port != "" {
		listen := *addr
		if listen == "" {
			listen = defAddr
		}
		if _, lp, err := net.SplitHostPort(listen); err == nil && lp != port {
			v.refuse(ip.key("hostports"), fmt.Sprintf("connetd advertises the port the relay listens on (%s), not %s; use a host name alone, or the same port", lp, port))
			return
		}
	}
	v.mapStr(host, hostKey, h, ip.key("hostports"), "")
}

func (v *validator) server015(s *Server) {
	p := key("server")
	if v.oneIngress(p.key("ingress"), len(s.Ingress), "listens for clients") {
		ip, in := p.key("ingress").at(0), s.Ingress[0]
		v.mapStr(&s.Addr, p.key("addr"), in.Addr, ip.key("addr"), "")
		v.mapStr(&s.CertFile, p.key("cert-file"), expandPath(in.CertFile), ip.key("cert-file"), "")
		v.mapStr(&s.KeyFile, p.key("key-file"), expandPath(in.KeyFile), ip.key("key-file"), "")
		v.mapList(&s.IPRestriction.AllowCIDRs, p.key("ip-restriction").key("allow-cidrs"), in.AllowCIDRs, ip.key("allow-cidrs"))
		v.mapList(&s.IPRestriction.DenyCIDRs, p.key("ip-restriction").key("deny-cidrs"), in.DenyCIDRs, ip.key("deny-cidrs"))
	}
	if v.oneIngress(p.key("relay-ingress"), len(s.RelayIngress), "'s relay listens") {
		v.relayIngress(p.key("relay-ingress").at(0), s.RelayIngress[0], &s.RelayAddr, p.key("relay-addr"), ":19191",
			&s.RelayHostname, p.key("relay-hostname"))
	}
	v.endpointExpiry(p, s.EndpointExpiryTimeout, s.EndpointExpiryDisable)
}

func (v *validator) endpointExpiry(p keyPath, timeout string, disable *bool) {
	const why = "connetd's control drops a client's endpoints when its session ends and keeps no expiry timer to set"
	if timeout != "" {
		v.refuse(p.key("endpoint-expiry-timeout"), why)
	}
	if disable != nil {
		v.refuse(p.key("endpoint-expiry-disable"), why)
	}
}

func (v *validator) control015(c *Control) {
	p := key("control")
	const oneCert = "connetd's control serves clients and relays with one certificate"
	if v.oneIngress(p.key("clients-ingress"), len(c.ClientsIngress), "'s control listens for clients") {
		ip, in := p.key("clients-ingress").at(0), c.ClientsIngress[0]
		v.mapStr(&c.ClientsAddr, p.key("clients-addr"), in.Addr, ip.key("addr"), "")
		v.mapStr(&c.CertFile, p.key("cert-file"), expandPath(in.CertFile), ip.key("cert-file"), oneCert)
		v.mapStr(&c.KeyFile, p.key("key-file"), expandPath(in.KeyFile), ip.key("key-file"), oneCert)
		v.mapList(&c.ClientsIPRestriction.AllowCIDRs, p.key("clients-ip-restriction").key("allow-cidrs"), in.AllowCIDRs, ip.key("allow-cidrs"))
		v.mapList(&c.ClientsIPRestriction.DenyCIDRs, p.key("clients-ip-restriction").key("deny-cidrs"), in.DenyCIDRs, ip.key("deny-cidrs"))
	}
	if v.oneIngress(p.key("relays-ingress"), len(c.RelaysIngress), "'s control listens for relays") {
		ip, in := p.key("relays-ingress").at(0), c.RelaysIngress[0]
		v.mapStr(&c.RelaysAddr, p.key("relays-addr"), in.Addr, ip.key("addr"), "")
		v.mapStr(&c.CertFile, p.key("cert-file"), expandPath(in.CertFile), ip.key("cert-file"), oneCert)
		v.mapStr(&c.KeyFile, p.key("key-file"), expandPath(in.KeyFile), ip.key("key-file"), oneCert)
		v.mapList(&c.RelaysIPRestriction.AllowCIDRs, p.key("relays-ip-restriction").key("allow-cidrs"), in.AllowCIDRs, ip.key("allow-cidrs"))
		v.mapList(&c.RelaysIPRestriction.DenyCIDRs, p.key("relays-ip-restriction").key("deny-cidrs"), in.DenyCIDRs, ip.key("deny-cidrs"))
	}
	if len(c.RelaysTokenRestriction) > 0 {
		to, from := p.key("relays-token-ip-restriction"), p.key("relays-token-restriction")
		if len(c.RelaysTokenRestrictions) > 0 {
			v.fail(from, nil, "conflicts with %s: both set the same thing; keep one", to)
			return
		}
		for i, r := range c.RelaysTokenRestriction {
			c.RelaysTokenRestrictions = append(c.RelaysTokenRestrictions, TokenRestriction{AllowCIDRs: r.AllowCIDRs, DenyCIDRs: r.DenyCIDRs})
			v.o.alias[to.at(i).String()] = from.at(i)
		}
		v.o.alias[to.String()] = from
	}
}

func (v *validator) relay015(r *Relay) {
	p := key("relay")
	if v.oneIngress(p.key("ingress"), len(r.Ingress), "'s relay listens") {
		v.relayIngress(p.key("ingress").at(0), r.Ingress[0], &r.Addr, p.key("addr"), ":19191", &r.Hostname, p.key("hostname"))
	}
	v.mapStr(&r.ControlCAs, p.key("control-cas"), expandPath(r.ControlCAsFile), p.key("control-cas-file"), "")
	if r.ControlName != "" && strings.ContainsFunc(r.ControlName, func(c rune) bool { return c <= ' ' || c == ':' || c == '/' }) {
		v.fail(p.key("control-name"), nil, "%q is not a host name", r.ControlName)
	}
	if r.HandshakeIdleTimeout != "" {
		v.refuse(p.key("handshake-idle-timeout"), "connetd's QUIC handshake timeout is fixed (5s, as connet's default) and not configurable")
	}
	if r.Metadata != "" {
		v.refuse(p.key("metadata"), "connetd's relays authenticate to control by token alone, and the protocol carries no metadata")
	}
}
