// Package endpointname is the one rule for endpoint names, shared by the
// configuration (which names file, line and key on failure) and control
// (which refuses an announce).
package endpointname

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is the longest name, in bytes. Names travel between peers and
// show up in logs, hence the length and character limits.
const MaxLen = 255

// Check returns nil for a valid name, or an error that says what is wrong
// with it.
func Check(name string) error {
	switch {
	case name == "":
		return errors.New("endpoint name is empty")
	case len(name) > MaxLen:
		return fmt.Errorf("endpoint name is %d bytes long; at most %d are allowed", len(name), MaxLen)
	case !utf8.ValidString(name):
		return errors.New("endpoint name is not valid UTF-8")
	case strings.ContainsFunc(name, unicode.IsControl):
		return fmt.Errorf("endpoint name %q contains control characters", name)
	}
	return nil
}
