package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/dbusapi"
)

// env is what a command runs with: the options and, once connected, the
// instance's manager object.
type env struct {
	g      globals
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	conn   *dbus.Conn
	obj    dbus.BusObject
}

const callTimeout = 10 * time.Second

// connect finds the instance on the system bus.
func (e *env) connect() error {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return fail(exitNotRunning, "cannot reach the system bus: %v", err)
	}
	e.conn = conn
	if e.g.instance == "" {
		running, err := instances(conn)
		if err != nil {
			return err
		}
		e.g.instance = "client"
		if len(running) == 1 {
			e.g.instance = running[0]
		}
	}
	name := dbusapi.BusName(e.g.instance)
	var has bool
	if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has); err != nil {
		return fail(exitNotRunning, "ask the bus for %s: %v", name, err)
	}
	if !has {
		return fail(exitNotRunning, "connetd@%s is not running: systemctl start connetd@%s", e.g.instance, e.g.instance)
	}
	e.obj = conn.Object(name, dbusapi.ManagerPath)
	return nil
}

// instances lists the running instances' names.
func instances(conn *dbus.Conn) ([]string, error) {
	var names []string
	if err := conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		return nil, fail(exitNotRunning, "list bus names: %v", err)
	}
	var out []string
	for _, n := range names {
		if inst, ok := dbusapi.InstanceOf(n); ok {
			out = append(out, inst)
		}
	}
	sort.Strings(out)
	return out, nil
}

// call invokes a method and stores its results, mapping D-Bus errors to
// messages and exit codes.
func (e *env) call(method string, args []any, out ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	c := e.obj.CallWithContext(ctx, method, 0, args...)
	if c.Err != nil {
		return busError(c.Err)
	}
	if len(out) == 0 {
		return nil
	}
	if err := c.Store(out...); err != nil {
		return fail(exitFailed, "unexpected answer to %s: %v", method, err)
	}
	return nil
}

func (e *env) property(name string, out any) error {
	if err := e.obj.StoreProperty(name, out); err != nil {
		return busError(err)
	}
	return nil
}

func busError(err error) error {
	var de dbus.Error
	if errors.As(err, &de) {
		msg := de.Error()
		switch de.Name {
		case dbusapi.ErrAccess:
			return fail(exitDenied, "access denied: %s (run as root or as a member of %s)", msg, dbusapi.AdminGroup)
		case "org.freedesktop.DBus.Error.UnknownMethod", "org.freedesktop.DBus.Error.UnknownInterface", dbusapi.ErrWrongRole:
			return fail(exitFailed, "not available for this instance's role: %s", msg)
		case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
			return fail(exitNotRunning, "instance stopped: %s", msg)
		}
		return fail(exitFailed, "%s", msg)
	}
	return fail(exitFailed, "%v", err)
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
