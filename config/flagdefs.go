package config

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// flagDef is one command-line flag. Its name is the TOML key it overrides,
// so that the file and the flags read the same.
type flagDef struct {
	name  string
	usage string
	list  bool                        // comma-separated and repeatable
	bool  bool                        // true or false, given as a value
	apply func(f *File, v flag.Value) // nil: handled separately (config, endpoint flags)
}

func str(name, usage string, set func(f *File, s string)) flagDef {
	return flagDef{name: name, usage: usage, apply: func(f *File, v flag.Value) { set(f, v.String()) }}
}

func strList(name, usage string, set func(f *File, l []string)) flagDef {
	return flagDef{name: name, usage: usage, list: true, apply: func(f *File, v flag.Value) { set(f, v.(*listFlag).items) }}
}

func boolean(name, usage string, set func(f *File, b bool)) flagDef {
	return flagDef{name: name, usage: usage, bool: true, apply: func(f *File, v flag.Value) { set(f, v.(*boolFlag).v) }}
}

// boolFlag takes "true" or "false" as a value (--tune-udp-buffers false), so
// that every flag takes a value, as newFlagSet relies on.
type boolFlag struct{ v bool }

func (b *boolFlag) String() string { return strconv.FormatBool(b.v) }

func (b *boolFlag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is neither true nor false", s)
	}
	b.v = v
	return nil
}

// listFlag collects "a,b" and repeated "--x a --x b" into one list.
type listFlag struct{ items []string }

func (l *listFlag) String() string { return strings.Join(l.items, ",") }

func (l *listFlag) Set(s string) error {
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			l.items = append(l.items, item)
		}
	}
	return nil
}

var roleNames = []string{"client", "server", "control", "relay"}

var commonFlags = []flagDef{
	{name: "config", usage: "configuration file (TOML); repeat to merge several in order, later files overriding earlier keys; flags override them all"},
	str("log-level", "one of debug, info, warn, error (default info)", func(f *File, s string) { f.LogLevel = s }),
	str("log-format", "one of text, json (default text)", func(f *File, s string) { f.LogFormat = s }),
	str("instance", "instance name on D-Bus (default: the config file's base name, else the role)", func(f *File, s string) { f.Instance = s }),
	boolean("tune-udp-buffers", "raise UDP buffer limits for QUIC when privileged (default true)", func(f *File, b bool) { f.TuneUDPBuffers = &b }),
}

// endpointFlags describe the one destination and/or source the command line
// can define; they are applied together by applyEndpoints.
var endpointFlags = []flagDef{
	{name: "src-name", usage: "name of a source to define (needs --src-addr)"},
	{name: "src-addr", usage: "address the source listens on for connections to forward: host:port, or a tcp:// or udp:// URL"},
	{name: "dst-name", usage: "name of a destination to define (needs --dst-addr)"},
	{name: "dst-addr", usage: "address the destination forwards connections to: host:port, or a tcp:// or udp:// URL"},
	{name: "route", usage: "route of the flag source/destination: any, direct or relay (default any)"},
	{name: "proxy-proto-version", usage: "PROXY protocol version sent by the flag destination: v1 or v2"},
	{name: "file-server-root", usage: "directory the flag destination serves files from"},
}

var roleFlags = map[string][]flagDef{
	"client": append([]flagDef{
		str("token", "token to authenticate to the control server", func(f *File, s string) { f.Client.Token = s }),
		str("token-file", "file holding the token", func(f *File, s string) { f.Client.TokenFile = s }),
		str("server-addr", "control server address, or several comma-separated to fail over between (default localhost:19190)", func(f *File, s string) { f.Client.ServerAddr, f.Client.ServerAddrs = s, nil }),
		strList("server-addrs", "control server addresses to fail over between, comma-separated; repeatable", func(f *File, l []string) { f.Client.ServerAddrs, f.Client.ServerAddr = l, "" }),
		str("server-cas", "file with the control server's certificate or CA", func(f *File, s string) { f.Client.ServerCAs = s }),
		str("direct-addr", "address to listen on for direct peer connections (default :19192)", func(f *File, s string) { f.Client.DirectAddr = s }),
		str("status-addr", "address of the status HTTP server (disabled unless set)", func(f *File, s string) { f.Client.StatusAddr = s }),
		str("metrics-addr", "address of the Prometheus metrics HTTP server (disabled unless set)", func(f *File, s string) { f.Client.MetricsAddr = s }),
		str("port-mapping", "ask the router for a port mapping: auto or off (default auto)", func(f *File, s string) { f.Client.PortMapping = s }),
	}, endpointFlags...),
	"server": {
		str("addr", "address the control server listens on (default :19190)", func(f *File, s string) { f.Server.Addr = s }),
		str("cert-file", "TLS certificate file (PEM)", func(f *File, s string) { f.Server.CertFile = s }),
		str("key-file", "TLS private key file (PEM)", func(f *File, s string) { f.Server.KeyFile = s }),
		strList("tokens", "client tokens, comma-separated; repeatable", func(f *File, l []string) { f.Server.Tokens = l }),
		str("tokens-file", "file with client tokens, one per line", func(f *File, s string) { f.Server.TokensFile = s }),
		str("relay-addr", "address the relay listens on (default :19191)", func(f *File, s string) { f.Server.RelayAddr = s }),
		str("relay-hostname", "public host name of the relay advertised to clients (default localhost)", func(f *File, s string) { f.Server.RelayHostname = s }),
		str("node-name", "name of this control node, shown by its clients and relays (default: the hostname)", func(f *File, s string) { f.Server.NodeName = s }),
		str("status-addr", "address of the status HTTP server (disabled unless set)", func(f *File, s string) { f.Server.StatusAddr = s }),
		str("metrics-addr", "address of the Prometheus metrics HTTP server (disabled unless set)", func(f *File, s string) { f.Server.MetricsAddr = s }),
		str("store-dir", "directory for persistent state (default $STATE_DIRECTORY, else a temporary directory)", func(f *File, s string) { f.Server.StoreDir = s }),
	},
	"control": {
		str("cert-file", "TLS certificate file (PEM)", func(f *File, s string) { f.Control.CertFile = s }),
		str("key-file", "TLS private key file (PEM)", func(f *File, s string) { f.Control.KeyFile = s }),
		str("clients-addr", "address to listen on for clients (default :19190)", func(f *File, s string) { f.Control.ClientsAddr = s }),
		strList("clients-tokens", "client tokens, comma-separated; repeatable", func(f *File, l []string) { f.Control.ClientsTokens = l }),
		str("clients-tokens-file", "file with client tokens, one per line", func(f *File, s string) { f.Control.ClientsTokensFile = s }),
		str("relays-addr", "address to listen on for relays (default :19189)", func(f *File, s string) { f.Control.RelaysAddr = s }),
		strList("relays-tokens", "relay tokens, comma-separated; repeatable", func(f *File, l []string) { f.Control.RelaysTokens = l }),
		str("relays-tokens-file", "file with relay tokens, one per line", func(f *File, s string) { f.Control.RelaysTokensFile = s }),
		str("node-name", "name of this control node, shown by its clients and relays (default: the hostname)", func(f *File, s string) { f.Control.NodeName = s }),
		str("status-addr", "address of the status HTTP server (disabled unless set)", func(f *File, s string) { f.Control.StatusAddr = s }),
		str("metrics-addr", "address of the Prometheus metrics HTTP server (disabled unless set)", func(f *File, s string) { f.Control.MetricsAddr = s }),
		str("store-dir", "directory for persistent state (default $STATE_DIRECTORY, else a temporary directory)", func(f *File, s string) { f.Control.StoreDir = s }),
	},
	"relay": {
		str("token", "token to authenticate to the control server", func(f *File, s string) { f.Relay.Token = s }),
		str("token-file", "file holding the token", func(f *File, s string) { f.Relay.TokenFile = s }),
		str("addr", "address the relay listens on (default :19191)", func(f *File, s string) { f.Relay.Addr = s }),
		str("hostname", "public host name advertised to clients (default localhost)", func(f *File, s string) { f.Relay.Hostname = s }),
		str("control-addr", "control server address, or several comma-separated to fail over between (default localhost:19190)", func(f *File, s string) { f.Relay.ControlAddr, f.Relay.ControlAddrs = s, nil }),
		strList("control-addrs", "control server addresses to fail over between, comma-separated; repeatable", func(f *File, l []string) { f.Relay.ControlAddrs, f.Relay.ControlAddr = l, "" }),
		str("control-cas", "file with the control server's certificate or CA", func(f *File, s string) { f.Relay.ControlCAs = s }),
		str("status-addr", "address of the status HTTP server (disabled unless set)", func(f *File, s string) { f.Relay.StatusAddr = s }),
		str("metrics-addr", "address of the Prometheus metrics HTTP server (disabled unless set)", func(f *File, s string) { f.Relay.MetricsAddr = s }),
		str("store-dir", "directory for persistent state (default $STATE_DIRECTORY, else a temporary directory)", func(f *File, s string) { f.Relay.StoreDir = s }),
	},
}

var roleSummary = map[string]string{
	"client":  "Run a client: expose destinations and reach them through sources.",
	"server":  "Run a control server and a relay in one process.",
	"control": "Run a control server.",
	"relay":   "Run a relay server.",
}

// Usage is the help text for a role; for "" or an unknown role it is the
// overview of roles.
func Usage(role string) string {
	var b strings.Builder
	defs, ok := roleFlags[role]
	if !ok {
		b.WriteString("usage: connetd [client|server|control|relay] [--config FILE] [flags...]\n\n")
		for _, r := range roleNames {
			fmt.Fprintf(&b, "  %-8s %s\n", r, roleSummary[r])
		}
		b.WriteString("\nWithout a role, the role is the one table of the --config file,\n" +
			"or client when there is no file. Run connetd ROLE --help for its flags.\n" +
			"\n  connetd check --config FILE...  validate (and merge) files without starting\n")
		return b.String()
	}
	fmt.Fprintf(&b, "usage: connetd %s [--config FILE] [flags...]\n\n%s\n", role, roleSummary[role])
	b.WriteString("Flags override the values of the configuration file.\n\n")
	for _, d := range append(commonFlags[:len(commonFlags):len(commonFlags)], defs...) {
		arg := "string"
		if d.list {
			arg = "list"
		}
		fmt.Fprintf(&b, "  --%s %s\n    \t%s\n", d.name, arg, d.usage)
	}
	return b.String()
}
