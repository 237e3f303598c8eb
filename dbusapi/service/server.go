// Package service is the daemon's side of the D-Bus management API: it
// exports one running daemon on a bus connection, turns calls into the
// daemon's own operations (the same path a configuration reload takes) and
// pushes the daemon's state out as properties and signals whenever it
// changes. The names it uses are in the parent package dbusapi.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"

	"github.com/connetd/connetd/daemon"
	"github.com/connetd/connetd/dbusapi"
)

// Server is the API of one daemon on one bus connection.
type Server struct {
	conn *dbus.Conn
	d    *daemon.Daemon
	log  *slog.Logger
	name string

	props *prop.Properties

	// syncMu makes syncs (after a change, and after a call) one at a time,
	// so the old path in PeerPathChanged is the one last signalled.
	syncMu sync.Mutex
	done   bool // Serve returned: the connection may close, calls sync no more
	// mu guards endpoints, which GetManagedObjects reads.
	mu        sync.Mutex
	endpoints map[dbus.ObjectPath]*endpointObject
	// moveSeq is the last flow move signalled (FlowMoved); movesSeen
	// says a first snapshot set it, so moves from before the service
	// started are not signalled.
	moveSeq   int64
	movesSeen bool
}

// Serve owns the instance's bus name on conn and answers calls until ctx
// ends; then it releases the name. The caller closes conn after Serve
// returns, not when ctx ends: a sync may be running until then. Properties and signals follow the
// daemon's change notification: each change is on the bus as soon as one
// snapshot of the daemon has been taken.
func Serve(ctx context.Context, conn *dbus.Conn, d *daemon.Daemon) error {
	s := &Server{conn: conn, d: d, log: d.Logger(), name: dbusapi.BusName(d.Instance()),
		endpoints: map[dbus.ObjectPath]*endpointObject{}}
	if err := s.export(); err != nil {
		return fmt.Errorf("export D-Bus objects: %w", err)
	}
	reply, err := conn.RequestName(s.name, dbus.NameFlagDoNotQueue)
	if err != nil {
		return fmt.Errorf("request bus name %s: %w", s.name, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		return fmt.Errorf("bus name %s is taken: is another connetd instance of that name running?", s.name)
	}
	s.log.Info("management API on D-Bus", "bus_name", s.name)
	defer func() {
		s.syncMu.Lock()
		s.done = true
		s.syncMu.Unlock()
		_, _ = conn.ReleaseName(s.name)
	}()
	for {
		changed := d.Changed() // before the sync, so nothing falls in between
		s.sync()
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// sync brings properties and endpoint objects up to date and signals what
// changed.
func (s *Server) sync() {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.done {
		return
	}
	snap := s.d.Snapshot()
	// The Manager first: Endpoints waits for a reload to finish, and
	// State must say "reloading" meanwhile.
	s.syncManager(snap)
	s.syncEndpoints(snap, s.d.Endpoints())
}

func (s *Server) export() error {
	m := &manager{s: s}
	ifaces := []string{dbusapi.ManagerIface}
	if err := s.conn.Export(m, dbusapi.ManagerPath, dbusapi.ManagerIface); err != nil {
		return err
	}
	switch s.d.Role() {
	case "client":
		ifaces = append(ifaces, dbusapi.ClientIface)
		if err := s.conn.Export(&clientAPI{s: s}, dbusapi.ManagerPath, dbusapi.ClientIface); err != nil {
			return err
		}
	case "server", "control":
		ifaces = append(ifaces, dbusapi.ControlIface)
		if err := s.conn.Export(&controlAPI{s: s}, dbusapi.ManagerPath, dbusapi.ControlIface); err != nil {
			return err
		}
	}
	if s.d.Role() == "server" || s.d.Role() == "relay" {
		ifaces = append(ifaces, dbusapi.RelayIface)
		if err := s.conn.Export(&relayAPI{s: s}, dbusapi.ManagerPath, dbusapi.RelayIface); err != nil {
			return err
		}
	}
	if err := s.conn.Export(&objectManager{s: s}, dbusapi.ManagerPath, dbusapi.ObjectManagerIface); err != nil {
		return err
	}
	var err error
	if s.props, err = prop.Export(s.conn, dbusapi.ManagerPath, prop.Map{dbusapi.ManagerIface: s.managerProps(s.d.Snapshot())}); err != nil {
		return err
	}
	node := &introspect.Node{Name: string(dbusapi.ManagerPath), Interfaces: []introspect.Interface{
		introspect.IntrospectData, prop.IntrospectData,
		{Name: dbusapi.ObjectManagerIface, Methods: introspect.Methods(&objectManager{}),
			Signals: []introspect.Signal{
				{Name: "InterfacesAdded", Args: []introspect.Arg{{Name: "object", Type: "o"}, {Name: "interfaces", Type: "a{sa{sv}}"}}},
				{Name: "InterfacesRemoved", Args: []introspect.Arg{{Name: "object", Type: "o"}, {Name: "interfaces", Type: "as"}}},
			}},
	}}
	for _, iface := range ifaces {
		node.Interfaces = append(node.Interfaces, s.introspectIface(iface))
	}
	return s.conn.Export(introspect.NewIntrospectable(node), dbusapi.ManagerPath, "org.freedesktop.DBus.Introspectable")
}

func (s *Server) introspectIface(iface string) introspect.Interface {
	out := introspect.Interface{Name: iface}
	switch iface {
	case dbusapi.ManagerIface:
		out.Methods = introspect.Methods(&manager{})
		out.Properties = s.props.Introspection(dbusapi.ManagerIface)
		out.Signals = []introspect.Signal{
			{Name: "EndpointAdded", Args: []introspect.Arg{{Name: "object", Type: "o"}, {Name: "kind", Type: "s"}, {Name: "name", Type: "s"}}},
			{Name: "EndpointRemoved", Args: []introspect.Arg{{Name: "object", Type: "o"}, {Name: "kind", Type: "s"}, {Name: "name", Type: "s"}}},
		}
	case dbusapi.ClientIface:
		out.Methods = introspect.Methods(&clientAPI{})
	case dbusapi.ControlIface:
		out.Methods = introspect.Methods(&controlAPI{})
	case dbusapi.RelayIface:
		out.Methods = introspect.Methods(&relayAPI{})
	}
	return out
}

// dbusError maps the daemon's errors to the API's error names.
func dbusError(err error) *dbus.Error {
	if err == nil {
		return nil
	}
	name := dbusapi.ErrFailed
	switch {
	case errors.Is(err, daemon.ErrNotFound):
		name = dbusapi.ErrNotFound
	case errors.Is(err, daemon.ErrExists):
		name = dbusapi.ErrExists
	case errors.Is(err, daemon.ErrInvalid):
		name = dbusapi.ErrInvalidArgs
	case errors.Is(err, daemon.ErrWrongRole):
		name = dbusapi.ErrWrongRole
	}
	return dbus.NewError(name, []any{err.Error()})
}

func invalid(format string, args ...any) *dbus.Error {
	return dbus.NewError(dbusapi.ErrInvalidArgs, []any{fmt.Sprintf(format, args...)})
}
