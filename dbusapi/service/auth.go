package service

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/dbusapi"
)

// authorize lets root, the service's own user and members of
// dbusapi.AdminGroup change things. The bus policy already refuses others on
// the system bus; checking here too keeps a mis-installed policy (or another
// bus) from opening the daemon up.
func (s *Server) authorize(sender dbus.Sender) *dbus.Error {
	var uid uint32
	err := s.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid)
	if err != nil {
		return dbus.NewError(dbusapi.ErrAccess, []any{fmt.Sprintf("cannot identify caller: %v", err)})
	}
	if uid == 0 || int(uid) == os.Getuid() || inGroup(uid, dbusapi.AdminGroup) {
		return nil
	}
	return dbus.NewError(dbusapi.ErrAccess, []any{fmt.Sprintf("uid %d may not change connetd; root or members of %s may", uid, dbusapi.AdminGroup)})
}

func inGroup(uid uint32, group string) bool {
	g, err := user.LookupGroup(group)
	if err != nil {
		return false
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return false
	}
	gids, err := u.GroupIds()
	return err == nil && slices.Contains(gids, g.Gid)
}
