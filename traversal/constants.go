package traversal

import "time"

// Every timing of NAT traversal, in one place: they depend on each other
// (a punch attempt must fit in what the dialing side waits for it).
const (
	punchGoWait  = 4 * time.Second        // for control's punch_go after our punch_ready
	punchWait    = 12 * time.Second       // the dialing side waits this long for an outcome
	controlWait  = 3 * time.Second        // a punch waits this long for control to come back
	reflectWait  = 700 * time.Millisecond // per reflect request
	reflectTries = 3
	// punchLingerSlack is how much longer than the dialing side's settle
	// time the other side answers after its attempt found a path: the two
	// sides heard of the path at moments up to control's skew apart.
	punchLingerSlack = 200 * time.Millisecond
)

// What punching may hold at once on a client: attempts (control allows 16
// waiting per client; more than that is a misbehaving control) and extra
// sockets of spraying attempts, so that no burst of punch messages makes a
// client open sockets without bound.
const (
	maxAttempts     = 16
	maxSpraySockets = 512
	// maxSpraySocketsPerPeer is one many-port attempt's worth: several
	// attempts toward one peer at once (which control should not start)
	// share it rather than open more.
	maxSpraySocketsPerPeer = 256
)
