package dbusapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"

	"github.com/connetd/connetd/daemon"
)

// syncEvery is how often properties and endpoint objects are brought up to
// date with the daemon (and changes signalled).
const syncEvery = 250 * time.Millisecond

// Server is the API of one daemon on one bus connection.
type Server struct {
	conn *dbus.Conn
	d    *daemon.Daemon
	log  *slog.Logger
	name string

	props *prop.Properties

	mu        sync.Mutex
	endpoints map[dbus.ObjectPath]*endpointObject
	kick      chan struct{}
}

// Serve owns the instance's bus name on conn and answers calls until ctx
// ends; then it releases the name.
func Serve(ctx context.Context, conn *dbus.Conn, d *daemon.Daemon) error {
	s := &Server{conn: conn, d: d, log: d.Logger(), name: BusName(d.Instance()),
		endpoints: map[dbus.ObjectPath]*endpointObject{}, kick: make(chan struct{}, 1)}
	if err := s.export(); err != nil {
		return err
	}
	reply, err := conn.RequestName(s.name, dbus.NameFlagDoNotQueue)
	if err != nil {
		return fmt.Errorf("request bus name %s: %w", s.name, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		return fmt.Errorf("bus name %s is taken: is another connetd instance of that name running?", s.name)
	}
	s.log.Info("management API on D-Bus", "bus_name", s.name)
	defer func() { _, _ = conn.ReleaseName(s.name) }()
	t := time.NewTicker(syncEvery)
	defer t.Stop()
	for {
		s.sync()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.kick:
		}
	}
}

// poke asks for a sync now, after a change made through the API.
func (s *Server) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Server) export() error {
	m := &manager{s: s}
	ifaces := []string{ManagerIface}
	if err := s.conn.Export(m, ManagerPath, ManagerIface); err != nil {
		return err
	}
	switch s.d.Role() {
	case "client":
		ifaces = append(ifaces, ClientIface)
		if err := s.conn.Export(&clientAPI{s: s}, ManagerPath, ClientIface); err != nil {
			return err
		}
	case "server", "control":
		ifaces = append(ifaces, ControlIface)
		if err := s.conn.Export(&controlAPI{s: s}, ManagerPath, ControlIface); err != nil {
			return err
		}
	}
	if s.d.Role() == "server" || s.d.Role() == "relay" {
		ifaces = append(ifaces, RelayIface)
		if err := s.conn.Export(&relayAPI{s: s}, ManagerPath, RelayIface); err != nil {
			return err
		}
	}
	if err := s.conn.Export(&objectManager{s: s}, ManagerPath, ObjectManagerIface); err != nil {
		return err
	}
	var err error
	if s.props, err = prop.Export(s.conn, ManagerPath, prop.Map{ManagerIface: s.managerProps()}); err != nil {
		return err
	}
	node := &introspect.Node{Name: string(ManagerPath), Interfaces: []introspect.Interface{
		introspect.IntrospectData, prop.IntrospectData,
		{Name: ObjectManagerIface, Methods: introspect.Methods(&objectManager{}),
			Signals: []introspect.Signal{
				{Name: "InterfacesAdded", Args: []introspect.Arg{{Name: "object", Type: "o"}, {Name: "interfaces", Type: "a{sa{sv}}"}}},
				{Name: "InterfacesRemoved", Args: []introspect.Arg{{Name: "object", Type: "o"}, {Name: "interfaces", Type: "as"}}},
			}},
	}}
	for _, iface := range ifaces {
		node.Interfaces = append(node.Interfaces, s.introspectIface(iface))
	}
	return s.conn.Export(introspect.NewIntrospectable(node), ManagerPath, "org.freedesktop.DBus.Introspectable")
}

func (s *Server) introspectIface(iface string) introspect.Interface {
	out := introspect.Interface{Name: iface}
	switch iface {
	case ManagerIface:
		out.Methods = introspect.Methods(&manager{})
		out.Properties = s.props.Introspection(ManagerIface)
		out.Signals = []introspect.Signal{
			{Name: "EndpointAdded", Args: []introspect.Arg{{Name: "object", Type: "o"}, {Name: "kind", Type: "s"}, {Name: "name", Type: "s"}}},
			{Name: "EndpointRemoved", Args: []introspect.Arg{{Name: "object", Type: "o"}, {Name: "kind", Type: "s"}, {Name: "name", Type: "s"}}},
		}
	case ClientIface:
		out.Methods = introspect.Methods(&clientAPI{})
	case ControlIface:
		out.Methods = introspect.Methods(&controlAPI{})
	case RelayIface:
		out.Methods = introspect.Methods(&relayAPI{})
	}
	return out
}

// dbusError maps the daemon's errors to the API's error names.
func dbusError(err error) *dbus.Error {
	if err == nil {
		return nil
	}
	name := ErrFailed
	switch {
	case errors.Is(err, daemon.ErrNotFound):
		name = ErrNotFound
	case errors.Is(err, daemon.ErrExists):
		name = ErrExists
	case errors.Is(err, daemon.ErrInvalid):
		name = ErrInvalidArgs
	case errors.Is(err, daemon.ErrWrongRole):
		name = ErrWrongRole
	}
	return dbus.NewError(name, []any{err.Error()})
}

func invalid(format string, args ...any) *dbus.Error {
	return dbus.NewError(ErrInvalidArgs, []any{fmt.Sprintf(format, args...)})
}

// manager is the Manager interface, present for every role.
type manager struct{ s *Server }

// Reload re-reads the configuration file, as systemctl reload does.
func (m *manager) Reload(sender dbus.Sender) *dbus.Error {
	if err := m.s.authorize(sender); err != nil {
		return err
	}
	defer m.s.poke()
	return dbusError(m.s.d.Reload())
}

// GetStatus returns the JSON the status endpoint serves.
func (m *manager) GetStatus() (string, *dbus.Error) {
	b, err := json.Marshal(m.s.d.Status())
	if err != nil {
		return "", dbusError(err)
	}
	return string(b), nil
}
