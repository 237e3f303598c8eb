package traversal

import (
	"reflect"
	"testing"
)

func TestPunchOutcomesAreCountedByNATKinds(t *testing.T) {
	trav := &Traversal{} // the table needs nothing else
	trav.mu.Lock()
	trav.countOutcomeLocked(true, "easy", "hard")
	trav.countOutcomeLocked(false, "easy", "hard")
	trav.countOutcomeLocked(false, "easy", "hard")
	trav.countOutcomeLocked(false, "", "weird-new-kind") // both folded into unknown
	trav.countOutcomeLocked(false, "unknown", "")
	trav.mu.Unlock()
	want := []PunchOutcome{
		{Outcome: "direct", LocalNAT: "easy", PeerNAT: "hard", Count: 1},
		{Outcome: "failed", LocalNAT: "easy", PeerNAT: "hard", Count: 2},
		{Outcome: "failed", LocalNAT: "unknown", PeerNAT: "unknown", Count: 2},
	}
	if got := trav.PunchOutcomes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
