package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/dbusapi"
)

// command is one connetctl command. The table is also what the man page
// test checks connetctl(1) against.
type command struct {
	name    string
	args    string
	summary string
	run     func(e *env, args []string) error
}

func (c *command) help() string {
	return fmt.Sprintf("usage: connetctl [--instance NAME] [--json] %s %s\n\n%s\n", c.name, c.args, c.summary)
}

var commands = []command{
	{name: "status", args: "", summary: "show the instance: endpoints, peers, the path each uses (direct or relay) and connections moved between paths", run: cmdStatus},
	{name: "list", args: "", summary: "list sources and destinations and where each comes from (config or runtime)", run: cmdList},
	{name: "peers", args: "", summary: "list the peers of every endpoint with path, RTT and bytes", run: cmdPeers},
	{name: "add-source", args: "NAME ADDR|URL [--route any|direct|relay] [--udp-idle-timeout D] [--udp-max-flows N]", summary: "add a source listening on ADDR, or a tcp:// or udp:// URL (kept across restarts)", run: cmdAddSource},
	{name: "remove-source", args: "NAME", summary: "remove a source and close its listener", run: cmdRemove("RemoveSource")},
	{name: "add-destination", args: "NAME ADDR|URL [--route R] [--proxy-proto-version v1|v2] [--file-server-root DIR] [--udp-idle-timeout D] [--udp-max-flows N]", summary: "add a destination forwarding to ADDR, or a tcp:// or udp:// URL (kept across restarts)", run: cmdAddDestination},
	{name: "remove-destination", args: "NAME", summary: "remove a destination", run: cmdRemove("RemoveDestination")},
	{name: "reload", args: "", summary: "re-read the configuration file (as systemctl reload does)", run: cmdReload},
	{name: "clients", args: "", summary: "list the clients connected to a server or control instance", run: cmdClients},
	{name: "relays", args: "", summary: "list the relays connected to a server or control instance", run: cmdRelays},
	{name: "tokens", args: "[add|revoke - | --file PATH | TOKEN]", summary: "count client tokens, add one, or revoke one (its clients are disconnected at once); - reads the token from standard input", run: cmdTokens},
	{name: "wait", args: waitUsage, summary: "wait until the source or destination NAME has a peer path (--path direct: a direct one); exits 1 at --timeout (default 30s) saying what is missing", run: cmdWait},
	{name: "diagnose", args: "", summary: "check why something does not connect: NAT, port mapping, UDP buffers, control, relays and each peer's path; exits 1 naming the first problem", run: cmdDiagnose},
	{name: "init", args: "server --public-addr HOST [--out DIR] [--port N] [--relay-port N] [--clients N] [--force] | client --from BUNDLE [--name NAME] [--out DIR] [--force]", summary: "write a server's configuration, certificate, tokens and one bundle per client, or install a client bundle (no daemon needed)", run: cmdInit},
	{name: "help", args: "[COMMAND]", summary: "show help", run: nil},
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// flags splits "--key value" and "--key=value" options from positional
// arguments; only the keys in allowed are accepted.
func flags(args []string, allowed ...string) (map[string]string, []string, error) {
	opts := map[string]string{}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			pos = append(pos, a)
			continue
		}
		key, val, hasVal := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		ok := false
		for _, k := range allowed {
			ok = ok || k == key
		}
		if !ok {
			return nil, nil, fail(exitUsage, "unknown option --%s", key)
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, nil, fail(exitUsage, "--%s needs a value", key)
			}
			i++
			val = args[i]
		}
		opts[key] = val
	}
	return opts, pos, nil
}

func positional(args []string, n int, what string) error {
	if len(args) != n {
		return fail(exitUsage, "expected %s", what)
	}
	return nil
}

func variants(opts map[string]string) map[string]dbus.Variant {
	out := map[string]dbus.Variant{}
	for k, v := range opts {
		out[k] = dbus.MakeVariant(v)
	}
	return out
}

// cmdAdd makes add-source and add-destination: NAME ADDR and options,
// passed to the method as its a{sv}.
func cmdAdd(kind, method string, options ...string) func(*env, []string) error {
	return func(e *env, args []string) error {
		opts, pos, err := flags(args, options...)
		if err != nil {
			return err
		}
		if err := positional(pos, 2, "NAME ADDR"); err != nil {
			return err
		}
		if err := e.connect(); err != nil {
			return err
		}
		var path dbus.ObjectPath
		if err := e.call(dbusapi.ClientIface+"."+method, []any{pos[0], pos[1], variants(opts)}, &path); err != nil {
			return err
		}
		return e.done(map[string]any{"added": kind, "name": pos[0], "object": path})
	}
}

var (
	cmdAddSource      = cmdAdd("source", "AddSource", "route", "udp-idle-timeout", "udp-max-flows")
	cmdAddDestination = cmdAdd("destination", "AddDestination", "route", "proxy-proto-version", "file-server-root",
		"udp-idle-timeout", "udp-max-flows")
)

func cmdRemove(method string) func(*env, []string) error {
	return func(e *env, args []string) error {
		if err := positional(args, 1, "NAME"); err != nil {
			return err
		}
		if err := e.connect(); err != nil {
			return err
		}
		if err := e.call(dbusapi.ClientIface+"."+method, []any{args[0]}); err != nil {
			return err
		}
		return e.done(map[string]any{"removed": strings.ToLower(strings.TrimPrefix(method, "Remove")), "name": args[0]})
	}
}

func cmdReload(e *env, args []string) error {
	if err := positional(args, 0, "no arguments"); err != nil {
		return err
	}
	if err := e.connect(); err != nil {
		return err
	}
	if err := e.call(dbusapi.ManagerIface+".Reload", nil); err != nil {
		return err
	}
	return e.done(map[string]any{"reloaded": e.g.instance})
}

// maxTokenInput bounds what is read for one token, so that pointing --file
// at /dev/zero fails instead of eating memory.
const maxTokenInput = 64 << 10

// tokenArg finds the token of "tokens add|revoke": "-" reads it from
// standard input, "--file PATH" from a file, so that it stays out of the
// command line, which every user of the machine can read (ps,
// /proc/PID/cmdline). A TOKEN argument still works, with a warning when it
// is added: a token being revoked is about to be worthless anyway.
func (e *env) tokenArg(verb string, args []string) (string, error) {
	var (
		r    io.Reader
		from string
	)
	switch {
	case len(args) == 1 && args[0] == "-":
		if e.stdin == nil {
			return "", fail(exitUsage, "no standard input to read the token from")
		}
		r, from = e.stdin, "standard input"
	case len(args) == 2 && args[0] == "--file", len(args) == 1 && strings.HasPrefix(args[0], "--file="):
		path := strings.TrimPrefix(args[len(args)-1], "--file=")
		f, err := os.Open(path)
		if err != nil {
			return "", fail(exitUsage, "token file: %v", err)
		}
		defer f.Close()
		r, from = f, path
	case len(args) == 1 && !strings.HasPrefix(args[0], "--file"):
		if verb == "add" {
			fmt.Fprintln(e.stderr, "connetctl: warning: a token on the command line is readable by every user of this machine (ps, /proc/PID/cmdline); "+
				"use \"tokens add -\" to read it from standard input, or \"tokens add --file PATH\"")
		}
		return args[0], nil
	default:
		return "", fail(exitUsage, tokensUsage)
	}
	return readToken(r, from)
}

// readToken reads one token as connetd reads a token-file: blank lines and
// # comments are ignored, and there must be exactly one.
func readToken(r io.Reader, from string) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxTokenInput+1))
	if err != nil {
		return "", fail(exitUsage, "reading the token from %s: %v", from, err)
	}
	if len(data) > maxTokenInput {
		return "", fail(exitUsage, "%s holds more than %d bytes; it should hold one token", from, maxTokenInput)
	}
	var toks []string
	for line := range strings.Lines(string(data)) {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			toks = append(toks, t)
		}
	}
	if len(toks) != 1 {
		return "", fail(exitUsage, "%s holds %d tokens; it must hold exactly one", from, len(toks))
	}
	return toks[0], nil
}

// done reports a successful change: silence as a table (like systemctl),
// an object with --json.
func (e *env) done(v map[string]any) error {
	if e.g.json {
		return e.printJSON(v)
	}
	return nil
}

const tokensUsage = "expected: tokens, or tokens add|revoke followed by - (standard input), --file PATH or TOKEN"

func cmdTokens(e *env, args []string) error {
	if len(args) >= 2 && (args[0] == "add" || args[0] == "revoke") {
		token, err := e.tokenArg(args[0], args[1:])
		if err != nil {
			return err
		}
		if err := e.connect(); err != nil {
			return err
		}
		method := map[string]string{"add": "AddToken", "revoke": "RevokeToken"}[args[0]]
		if err := e.call(dbusapi.ControlIface+"."+method, []any{token}); err != nil {
			return err
		}
		return e.done(map[string]any{"token": args[0] + "ed"})
	}
	if len(args) != 0 {
		return fail(exitUsage, tokensUsage)
	}
	if err := e.connect(); err != nil {
		return err
	}
	var counts tokenCounts
	if err := e.call(dbusapi.ControlIface+".GetTokenCounts", nil, &counts.Config, &counts.Runtime, &counts.Revoked); err != nil {
		return err
	}
	if e.g.json {
		return e.printJSON(counts)
	}
	_, err := fmt.Fprint(e.stdout, formatTokens(counts))
	return err
}
