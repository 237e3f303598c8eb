package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/dbusapi"
)

// waitUsage is the argument line of `connetctl wait`.
const waitUsage = "NAME | --unit-instance INSTANCE:NAME [--path any|direct] [--timeout D|infinity]"

const (
	defaultWaitTimeout = 30 * time.Second
	// waitPoll is how often wait looks again without a signal, so that a
	// signal lost (or never sent) costs at most this long, never a hang.
	waitPoll = 2 * time.Second
)

// waitOpts is a parsed `connetctl wait` command line.
type waitOpts struct {
	instance string        // connetd instance; "" is the default one
	name     string        // endpoint name
	path     string        // any or direct
	timeout  time.Duration // 0: look once; <0: no limit
}

// parseWait reads wait's arguments; instance is --instance's value.
// --unit-instance INSTANCE:NAME is what connetd-wait@.service passes (its
// %I): the instance up to the first ":", the endpoint name after it.
func parseWait(instance string, args []string) (waitOpts, error) {
	o := waitOpts{instance: instance, path: "any", timeout: defaultWaitTimeout}
	opts, pos, err := flags(args, "path", "timeout", "unit-instance")
	if err != nil {
		return o, err
	}
	if ui, ok := opts["unit-instance"]; ok {
		inst, name, found := strings.Cut(ui, ":")
		switch {
		case len(pos) != 0:
			return o, fail(exitUsage, "give either NAME or --unit-instance INSTANCE:NAME, not both")
		case instance != "":
			return o, fail(exitUsage, "give either --instance or --unit-instance INSTANCE:NAME, not both")
		case !found || inst == "" || name == "":
			return o, fail(exitUsage, "--unit-instance %q: expected INSTANCE:NAME, as in connetd-wait@client:web.service", ui)
		}
		o.instance, o.name = inst, name
	} else {
		if err := positional(pos, 1, "NAME, the source or destination to wait for"); err != nil {
			return o, err
		}
		o.name = pos[0]
	}
	if o.name == "" {
		return o, fail(exitUsage, "the endpoint name is empty")
	}
	if p, ok := opts["path"]; ok {
		if p != "any" && p != "direct" {
			return o, fail(exitUsage, "--path %q: expected any or direct", p)
		}
		o.path = p
	}
	if t, ok := opts["timeout"]; ok {
		if t == "infinity" {
			o.timeout = -1
		} else {
			d, err := time.ParseDuration(t)
			if err != nil || d < 0 {
				return o, fail(exitUsage, "--timeout %q: expected a duration such as 30s or 5m, or infinity", t)
			}
			o.timeout = d
		}
	}
	return o, nil
}

// waitEndpoint is what wait learns of one source or destination.
type waitEndpoint struct {
	kind  string
	state string
	peers []dbusapi.PeerInfo
}

// waitVerdict decides whether one of eps has a peer path of the kind
// wanted ("any": direct or relay; "direct": direct only). When none has,
// missing says why, starting with one of "no such endpoint", "no peer",
// "peers but no path" or "only relay".
func waitVerdict(name, want string, eps []waitEndpoint) (ready bool, kind, path, missing string) {
	if len(eps) == 0 {
		return false, "", "", fmt.Sprintf("no such endpoint: no source or destination is named %q", name)
	}
	var why []string
	for _, ep := range eps {
		relayed := false
		for _, p := range ep.peers {
			switch p.Path {
			case "direct":
				return true, ep.kind, "direct", ""
			case "relay":
				relayed = true
			}
		}
		if relayed && want == "any" {
			return true, ep.kind, "relay", ""
		}
		var w string
		switch {
		case relayed:
			w = fmt.Sprintf("only relay: %s %q reaches its peers by relay, and --path direct wants a direct path", ep.kind, name)
		case len(ep.peers) == 0:
			w = fmt.Sprintf("no peer: %s %q has no peer yet", ep.kind, name)
		default:
			w = fmt.Sprintf("peers but no path: %s %q has %d peer(s), none with a path yet", ep.kind, name, len(ep.peers))
		}
		if ep.state != "" && ep.state != "active" {
			w += " (" + ep.state + ")"
		}
		why = append(why, w)
	}
	return false, "", "", strings.Join(why, "; ")
}

// errNotOnBus is a look that found the instance off the bus.
var errNotOnBus = errors.New("not on the bus")

// waitLook asks the instance for the endpoints named name. errNotOnBus
// means the instance is not (or no longer) running; other errors end the
// wait.
func waitLook(conn *dbus.Conn, busName, name string) ([]waitEndpoint, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var has bool
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, busName).Store(&has); err != nil {
		return nil, fail(exitNotRunning, "ask the bus for %s: %v", busName, err)
	}
	if !has {
		return nil, errNotOnBus
	}
	obj := conn.Object(busName, dbusapi.ManagerPath)
	var eps []waitEndpoint
	for _, kind := range []string{"source", "destination"} {
		method := map[string]string{"source": "ListSources", "destination": "ListDestinations"}[kind]
		var list []dbusapi.EndpointInfo
		if err := obj.CallWithContext(ctx, dbusapi.ClientIface+"."+method, 0).Store(&list); err != nil {
			return nil, lookError(err)
		}
		for _, ep := range list {
			if ep.Name != name {
				continue
			}
			w := waitEndpoint{kind: kind}
			var all map[string]dbus.Variant
			// An endpoint removed in between is simply not there.
			if conn.Object(busName, ep.Path).CallWithContext(ctx, dbusapi.PropertiesIface+".GetAll", 0, dbusapi.EndpointIface).Store(&all) != nil {
				continue
			}
			if storeProps(all, map[string]any{"State": &w.state, "Peers": &w.peers}) != nil {
				continue
			}
			eps = append(eps, w)
		}
	}
	return eps, nil
}

// lookError maps a failed list call: an instance that went away is waited
// for again; anything else (wrong role, access) ends the wait.
func lookError(err error) error {
	var de dbus.Error
	if errors.As(err, &de) && (de.Name == "org.freedesktop.DBus.Error.ServiceUnknown" || de.Name == "org.freedesktop.DBus.Error.NameHasNoOwner") {
		return errNotOnBus
	}
	return busError(err)
}

func cmdWait(e *env, args []string) error {
	o, err := parseWait(e.g.instance, args)
	if err != nil {
		return err
	}
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return fail(exitNotRunning, "cannot reach the system bus: %v", err)
	}
	defer conn.Close()
	if o.instance == "" {
		running, err := instances(conn)
		if err != nil {
			return err
		}
		o.instance = "client"
		if len(running) == 1 {
			o.instance = running[0]
		}
	}
	e.g.instance = o.instance
	busName := dbusapi.BusName(o.instance)

	// Subscribe before the first look, so that nothing falls in between:
	// the instance's signals (PropertiesChanged of an endpoint's Peers,
	// PeerPathChanged, EndpointAdded) and its name coming and going.
	signals := make(chan *dbus.Signal, 64)
	conn.Signal(signals)
	for _, m := range [][]dbus.MatchOption{
		{dbus.WithMatchPathNamespace(dbusapi.ManagerPath)},
		{dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, busName)},
	} {
		if err := conn.AddMatchSignal(m...); err != nil {
			return fail(exitNotRunning, "subscribe to signals: %v", err)
		}
	}
	var deadline <-chan time.Time
	if o.timeout > 0 {
		timer := time.NewTimer(o.timeout)
		defer timer.Stop()
		deadline = timer.C
	}
	poll := time.NewTicker(waitPoll)
	defer poll.Stop()
	// The last look comes at the deadline: the path may have come up with it.
	last := o.timeout == 0
	for {
		eps, err := waitLook(conn, busName, o.name)
		if err != nil && !errors.Is(err, errNotOnBus) {
			return err
		}
		if err == nil {
			ready, kind, path, missing := waitVerdict(o.name, o.path, eps)
			if ready {
				return e.done(map[string]any{"instance": o.instance, "name": o.name, "kind": kind, "path": path})
			}
			if last {
				return fail(exitFailed, "wait %s: no %s path after %s: %s", o.name, map[string]string{"any": "peer", "direct": "direct"}[o.path], o.timeout, missing)
			}
		} else if last {
			return fail(exitNotRunning, "wait %s: connetd@%s is not running after %s: systemctl start connetd@%s", o.name, o.instance, o.timeout, o.instance)
		}
		select {
		case <-signals:
		case <-poll.C:
		case <-deadline:
			last = true
		}
		// Several signals often come together: look once for all of them.
		for drained := false; !drained; {
			select {
			case <-signals:
			default:
				drained = true
			}
		}
	}
}
