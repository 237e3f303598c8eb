package traversal

import (
	"sort"

	"github.com/connetd/connetd/wire"
)

// PunchOutcome counts finished punch attempts with one result between one
// pair of NAT kinds, for metrics: the failure ratio by NAT pair tells a
// NAT that defeats traversal from a bad peer.
type PunchOutcome struct {
	Outcome  string `json:"outcome"`   // direct or failed
	LocalNAT string `json:"local_nat"` // none, easy, hard or unknown
	PeerNAT  string `json:"peer_nat"`  // the same for the peer
	Count    int64  `json:"count"`
}

// Punch outcomes.
const (
	OutcomeDirect = "direct"
	OutcomeFailed = "failed"
)

// outcomeKey is one row of the outcome table. Its parts take a few fixed
// values (natKind), so the table stays small whatever peers report.
type outcomeKey struct{ outcome, local, peer string }

// natKind is nat as a label value. The peer's kind comes from control, so
// a value this version does not know is folded into unknown rather than
// making a new row.
func natKind(nat string) string {
	switch nat {
	case wire.NATNone, wire.NATEasy, wire.NATHard:
		return nat
	}
	return Name(wire.NATUnknown)
}

// countOutcomeLocked records one finished attempt. t.mu is held.
func (t *Traversal) countOutcomeLocked(direct bool, local, peer string) {
	k := outcomeKey{OutcomeFailed, natKind(local), natKind(peer)}
	if direct {
		k.outcome = OutcomeDirect
	}
	if t.outcomes == nil {
		t.outcomes = map[outcomeKey]int64{}
	}
	t.outcomes[k]++
}

// PunchOutcomes reports the finished attempts since start, by outcome and
// NAT kinds, sorted. Unlike PeerStats they outlive the peers, so they only
// grow, as counters must.
func (t *Traversal) PunchOutcomes() []PunchOutcome {
	t.mu.Lock()
	out := make([]PunchOutcome, 0, len(t.outcomes))
	for k, n := range t.outcomes {
		out = append(out, PunchOutcome{Outcome: k.outcome, LocalNAT: k.local, PeerNAT: k.peer, Count: n})
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Outcome != b.Outcome {
			return a.Outcome < b.Outcome
		}
		if a.LocalNAT != b.LocalNAT {
			return a.LocalNAT < b.LocalNAT
		}
		return a.PeerNAT < b.PeerNAT
	})
	return out
}
