// Package dbusapi is connetd's D-Bus management API as its callers see it:
// bus names, object paths, interfaces, error names and the structs methods
// return. docs/dbus-api.md documents every name here. It depends on nothing
// but godbus, so that connetctl stays a small program; the daemon's side of
// the API is dbusapi/service.
package dbusapi

import (
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Names on the bus. The version is part of every name, as with
// org.freedesktop.systemd1, so a future incompatible API can live beside it.
const (
	BusPrefix   = "org.connetd.Connetd1"
	ManagerPath = dbus.ObjectPath("/org/connetd/Connetd1")

	ManagerIface  = "org.connetd.Connetd1.Manager"
	ClientIface   = "org.connetd.Connetd1.Client"
	ControlIface  = "org.connetd.Connetd1.Control"
	RelayIface    = "org.connetd.Connetd1.Relay"
	EndpointIface = "org.connetd.Connetd1.Endpoint"

	ObjectManagerIface = "org.freedesktop.DBus.ObjectManager"
	PropertiesIface    = "org.freedesktop.DBus.Properties"
)

// Errors returned by methods.
const (
	ErrNotFound    = "org.connetd.Connetd1.Error.NotFound"
	ErrExists      = "org.connetd.Connetd1.Error.Exists"
	ErrInvalidArgs = "org.connetd.Connetd1.Error.InvalidArgs"
	ErrWrongRole   = "org.connetd.Connetd1.Error.WrongRole"
	ErrFailed      = "org.connetd.Connetd1.Error.Failed"
	ErrAccess      = "org.freedesktop.DBus.Error.AccessDenied"
)

// BusName is the name an instance owns: org.connetd.Connetd1.<instance>.
// Characters a bus name cannot hold become "_", and a leading digit gets
// a "_" before it.
func BusName(instance string) string {
	return BusPrefix + "." + busElement(instance)
}

// InstanceOf is the reverse of BusName, for names that came from it.
func InstanceOf(busName string) (string, bool) {
	rest, ok := strings.CutPrefix(busName, BusPrefix+".")
	if !ok || rest == "" || strings.Contains(rest, ".") {
		return "", false
	}
	return strings.TrimPrefix(rest, "_"), true
}

func busElement(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if out == "" || out[0] >= '0' && out[0] <= '9' {
		out = "_" + out
	}
	return out
}

// EndpointPath is the object of one source or destination:
// /org/connetd/Connetd1/source/<name>, the name escaped as systemd escapes
// unit names in object paths.
func EndpointPath(kind, name string) dbus.ObjectPath {
	return ManagerPath + dbus.ObjectPath("/"+kind+"/"+sddbus.PathBusEscape(name))
}
