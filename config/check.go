package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"

	"github.com/connetd/connetd/internal/endpointname"
)

// addr applies def to an empty address and checks the result is host:port.
func (v *validator) addr(p keyPath, val, def string) string {
	if val == "" {
		val = def
	}
	if val == "" {
		return ""
	}
	if err := checkAddr(val); err != nil {
		v.fail(p, err, "%q is not a host:port address (%v)", val, err)
	}
	return val
}

// checkAddr accepts an empty host (listen on all interfaces) but insists on a
// numeric port, since service names resolve differently from host to host.
func checkAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
			return errors.New(ae.Err)
		}
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// hostname is advertised to clients together with the relay's own port, so a
// port here would produce an address nobody listens on.
func (v *validator) hostname(p keyPath, val string) string {
	if val == "" {
		return "localhost"
	}
	if _, _, err := net.SplitHostPort(val); err == nil {
		v.fail(p, nil, "%q includes a port; give the host name only", val)
	} else if strings.ContainsFunc(val, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		v.fail(p, nil, "%q contains spaces or control characters", val)
	}
	return val
}

// endpointName checks a destination or source name by the rule control
// applies to announces.
func (v *validator) endpointName(p keyPath, name string) {
	if err := endpointname.Check(name); err != nil {
		v.fail(p, nil, "%s", err)
	}
}
