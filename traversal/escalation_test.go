package traversal

import (
	"testing"

	"github.com/connetd/connetd/wire"
)

func TestEscalationAlternatesSprayingSidesAfterFailures(t *testing.T) {
	for _, c := range []struct {
		failures   int
		self, peer string
		want       string
	}{
		{0, wire.NATEasy, wire.NATEasy, ""},
		{1, wire.NATEasy, wire.NATEasy, wire.PunchSprayDestination},
		{2, wire.NATEasy, wire.NATEasy, wire.PunchSpraySource},
		{3, wire.NATNone, wire.NATHard, wire.PunchSprayDestination},
		{5, wire.NATHard, wire.NATHard, ""}, // cannot help between two hard NATs
	} {
		if got := escalation(c.failures, c.self, c.peer); got != c.want {
			t.Errorf("escalation(%d, %q, %q) = %q, want %q", c.failures, c.self, c.peer, got, c.want)
		}
	}
}
