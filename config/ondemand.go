package config

import (
	"regexp"
	"strings"
	"time"
)

// OnDemand are the keys of a destination whose service systemd starts when
// a connection finds it down (start-unit), and stops again once it has been
// idle (stop-idle).
type OnDemand struct {
	// StartUnit is the systemd service that serves the destination's
	// address: started over D-Bus when dialing it is refused.
	StartUnit string `toml:"start-unit"`
	// StopIdle stops StartUnit after this long without a connection to
	// the destination; unset, the unit keeps running.
	StopIdle string `toml:"stop-idle"`

	// Resolved by validation (0: never stopped).
	StopIdleAfter time.Duration `toml:"-"`
}

// unitName is a systemd service name: what systemd itself takes (letters,
// digits, ":-_.\" and "@" for an instance), ending in .service.
var unitName = regexp.MustCompile(`^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.service$`)

// OnDemandPrefix starts the names of the units that the polkit rule
// connetd ships lets connetd start and stop (50-connetd.rules).
const OnDemandPrefix = "connetd-ondemand-"

// onDemand checks start-unit and stop-idle: a unit only for destinations
// connetd dials (tcp, tls, http, https), stop-idle only with a unit.
func (v *validator) onDemand(ep keyPath, d *Destination) {
	o := &d.OnDemand
	if o.StartUnit != "" {
		switch {
		case len(o.StartUnit) > 255 || !unitName.MatchString(o.StartUnit) || o.StartUnit[0] == '@' || o.StartUnit[0] == '.':
			v.fail(ep.key("start-unit"), nil, "%q is not a systemd service name such as \"myapp.service\"", o.StartUnit)
		case d.Proto == "udp":
			v.fail(ep.key("start-unit"), nil, "applies only to destinations connetd dials (tcp, tls, http, https), not udp://")
		case d.Kind == "file" || d.FileServerRoot != "":
			v.fail(ep.key("start-unit"), nil, "applies only to destinations connetd dials, not a file server")
		case !strings.HasPrefix(o.StartUnit, OnDemandPrefix):
			v.warn(ep.key("start-unit"), "the polkit rule connetd ships (50-connetd.rules) lets user connetd start and stop only "+
				"%s*.service: %s needs a polkit rule of your own (or connetd running as root)", OnDemandPrefix, o.StartUnit)
		}
	}
	if o.StopIdle == "" {
		return
	}
	if o.StartUnit == "" {
		v.fail(ep.key("stop-idle"), nil, "applies only with start-unit")
		return
	}
	idle, err := time.ParseDuration(o.StopIdle)
	if err != nil || idle <= 0 {
		v.fail(ep.key("stop-idle"), err, "%q is not a positive duration such as \"10m\"", o.StopIdle)
		return
	}
	o.StopIdleAfter = idle
}
