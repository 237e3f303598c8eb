package endpointname

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, ok := range []string{"web", "a", strings.Repeat("n", MaxLen), "dienst-ü", "with space"} {
		if err := Check(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for name, want := range map[string]string{
		"":                            "is empty",
		strings.Repeat("n", MaxLen+1): "256 bytes long",
		"bad\xff":                     "not valid UTF-8",
		"new\nline":                   "control characters",
		"del\x7f":                     "control characters",
	} {
		if err := Check(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", name, err, want)
		}
	}
}
