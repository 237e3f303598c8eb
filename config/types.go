// Package config reads connetd's TOML configuration, which follows connet's
// documented format, and the command-line flags that override it.
package config

import (
	"time"

	"github.com/connetd/connetd/restrict"
)

// File is one configuration file. Exactly one of the role tables is set.
type File struct {
	LogLevel  string `toml:"log-level"`
	LogFormat string `toml:"log-format"`
	// TuneUDPBuffers (default true) lets a privileged daemon raise
	// net.core.rmem_max/wmem_max and force 7 MiB socket buffers for QUIC.
	TuneUDPBuffers *bool `toml:"tune-udp-buffers"`

	Client  *Client  `toml:"client"`
	Server  *Server  `toml:"server"`
	Control *Control `toml:"control"`
	Relay   *Relay   `toml:"relay"`

	// Path is the file this was read from ("" when built from flags only).
	Path string `toml:"-"`
	// Instance names this daemon on D-Bus and in connetctl: --instance, else
	// the config file's base name (src.toml → src), else the role.
	Instance string `toml:"-"`
	// Warnings are what loads but is likely not what was meant, or unsafe
	// (a token on the command line); the daemon logs them.
	Warnings []*Error `toml:"-"`
	// Notices are worth saying once at info level: connet keys accepted
	// whose request connetd always meets (relay-encryptions).
	Notices []*Error `toml:"-"`
}

// Client is the [client] table.
type Client struct {
	Token     string `toml:"token"`
	TokenFile string `toml:"token-file"`

	// ServerAddr is one control address or a comma-separated list;
	// ServerAddrs is the list as an array. Validation leaves the list in
	// ServerAddr, comma-separated.
	ServerAddr  string   `toml:"server-addr"`
	ServerAddrs []string `toml:"server-addrs"`
	ServerCAs   string   `toml:"server-cas"`

	DirectAddr string `toml:"direct-addr"`
	StatusAddr string `toml:"status-addr"`
	// MetricsAddr serves Prometheus metrics on /metrics; off when empty.
	MetricsAddr string `toml:"metrics-addr"`
	// PortMapping is "auto" (ask the router by NAT-PMP, PCP or UPnP for a
	// mapping of the direct port) or "off".
	PortMapping string `toml:"port-mapping"`

	Destinations map[string]Destination `toml:"destinations"`
	Sources      map[string]Source      `toml:"sources"`

	Connet015Client // connet v0.15's keys (connet015.go)

	// Resolved by validation.
	TokenValue string `toml:"-"` // from token or token-file
}

// Destination is one [client.destinations.NAME] table.
type Destination struct {
	Addr string `toml:"addr"`
	// URL is the address with its protocol, "tcp://host:port" or
	// "udp://host:port" (connet's current form); set addr or url.
	URL               string `toml:"url"`
	Route             string `toml:"route"`
	ProxyProtoVersion string `toml:"proxy-proto-version"`
	FileServerRoot    string `toml:"file-server-root"`
	// RelayEncryptions is connet v0.15's; see Connet015Client.
	RelayEncryptions EncryptionList `toml:"relay-encryptions"`
	UDPFlows
	EndpointKind
	OnDemand
	// ServerName is the name a tls/https destination sends (SNI) and
	// verifies; by default the url's host.
	ServerName string `toml:"server-name"`

	// Resolved by validation: the protocol, "" (tcp) or "udp"; Addr
	// holds the URL's host:port and URL is cleared.
	Proto string `toml:"-"`
}

// Source is one [client.sources.NAME] table.
type Source struct {
	Addr  string `toml:"addr"`
	URL   string `toml:"url"` // as Destination.URL
	Route string `toml:"route"`
	// RelayEncryptions is connet v0.15's; see Connet015Client.
	RelayEncryptions EncryptionList `toml:"relay-encryptions"`
	UDPFlows
	LB
	EndpointKind

	Proto string `toml:"-"` // as Destination.Proto
}

// UDPFlows are the keys of a udp:// source or destination.
type UDPFlows struct {
	// UDPIdleTimeout ends a flow idle this long ("60s" when unset).
	UDPIdleTimeout string `toml:"udp-idle-timeout"`
	// UDPMaxFlows caps the endpoint's open flows (4096 when unset).
	UDPMaxFlows int `toml:"udp-max-flows"`

	// Resolved by validation (0: the default).
	UDPIdle time.Duration `toml:"-"`
}

// Server is the [server] table: control and relay in one process.
type Server struct {
	Addr     string `toml:"addr"`
	CertFile string `toml:"cert-file"`
	KeyFile  string `toml:"key-file"`

	Tokens     []string `toml:"tokens"`
	TokensFile string   `toml:"tokens-file"`

	RelayAddr     string `toml:"relay-addr"`
	RelayHostname string `toml:"relay-hostname"`

	// NodeName names this control node to its clients and relays
	// (default: the hostname).
	NodeName string `toml:"node-name"`

	StatusAddr string `toml:"status-addr"`
	// MetricsAddr serves Prometheus metrics on /metrics; off when empty.
	MetricsAddr string `toml:"metrics-addr"`
	StoreDir    string `toml:"store-dir"`

	IPRestriction     IPRestriction      `toml:"ip-restriction"`
	TokenRestrictions []TokenRestriction `toml:"token-restriction"`

	Limits
	ClusterStore    // store and etcd-* (cluster.go)
	Connet015Server // connet v0.15's keys (connet015.go)

	// Resolved by validation.
	TokenValues    []string         `toml:"-"` // tokens plus tokens-file
	IPRestrict     restrict.IP      `toml:"-"`
	TokenRestricts []restrict.Token `toml:"-"` // empty, or one per token
}

// Control is the [control] table.
type Control struct {
	CertFile string `toml:"cert-file"`
	KeyFile  string `toml:"key-file"`

	ClientsAddr       string   `toml:"clients-addr"`
	ClientsTokens     []string `toml:"clients-tokens"`
	ClientsTokensFile string   `toml:"clients-tokens-file"`

	RelaysAddr       string   `toml:"relays-addr"`
	RelaysTokens     []string `toml:"relays-tokens"`
	RelaysTokensFile string   `toml:"relays-tokens-file"`

	// NodeName is as Server's.
	NodeName string `toml:"node-name"`

	StatusAddr string `toml:"status-addr"`
	// MetricsAddr serves Prometheus metrics on /metrics; off when empty.
	MetricsAddr string `toml:"metrics-addr"`
	StoreDir    string `toml:"store-dir"`

	ClientsIPRestriction     IPRestriction      `toml:"clients-ip-restriction"`
	ClientsTokenRestrictions []TokenRestriction `toml:"clients-token-restriction"`
	RelaysIPRestriction      IPRestriction      `toml:"relays-ip-restriction"`
	RelaysTokenRestrictions  []TokenRestriction `toml:"relays-token-ip-restriction"`

	Limits
	ClusterStore     // store and etcd-* (cluster.go)
	Connet015Control // connet v0.15's keys (connet015.go)

	// Resolved by validation.
	ClientsTokenValues    []string         `toml:"-"`
	ClientsIPRestrict     restrict.IP      `toml:"-"`
	ClientsTokenRestricts []restrict.Token `toml:"-"`
	RelaysTokenValues     []string         `toml:"-"`
	RelaysIPRestrict      restrict.IP      `toml:"-"`
	RelaysTokenRestricts  []restrict.Token `toml:"-"`
}

// Limits are the keys of [server] and [control] that bound what one client
// may make control do. 0 (or absent) means control's default.
type Limits struct {
	MaxSessionsPerToken   int `toml:"max-sessions-per-token"`
	MaxEndpointsPerClient int `toml:"max-endpoints-per-client"`
	MaxPeersPerEndpoint   int `toml:"max-peers-per-endpoint"`
	MaxPunchesPerMinute   int `toml:"max-punches-per-minute"`
}

// Relay is the [relay] table.
type Relay struct {
	Token     string `toml:"token"`
	TokenFile string `toml:"token-file"`

	Addr     string `toml:"addr"`
	Hostname string `toml:"hostname"`

	// ControlAddr and ControlAddrs are as Client's ServerAddr and
	// ServerAddrs.
	ControlAddr  string   `toml:"control-addr"`
	ControlAddrs []string `toml:"control-addrs"`
	ControlCAs   string   `toml:"control-cas"`

	StatusAddr string `toml:"status-addr"`
	// MetricsAddr serves Prometheus metrics on /metrics; off when empty.
	MetricsAddr string `toml:"metrics-addr"`
	StoreDir    string `toml:"store-dir"`

	Connet015Relay // connet v0.15's keys (connet015.go)

	// Resolved by validation.
	TokenValue string `toml:"-"`
}

// IPRestriction is an allow/deny list of networks.
type IPRestriction struct {
	AllowCIDRs []string `toml:"allow-cidrs"`
	DenyCIDRs  []string `toml:"deny-cidrs"`
}

// TokenRestriction applies to the token at the same index.
type TokenRestriction struct {
	AllowCIDRs  []string `toml:"allow-cidrs"`
	DenyCIDRs   []string `toml:"deny-cidrs"`
	NameMatches string   `toml:"name-matches"`
	// NameMatchesAnchored makes NameMatches match the whole name. Off by
	// default: connet matches anywhere in the name ("web" allows
	// "evil-web"), and a connet file must allow here what it allows there.
	NameMatchesAnchored bool   `toml:"name-matches-anchored"`
	RoleMatches         string `toml:"role-matches"`
}
