package client

import "sync/atomic"

// pathChange is why a dialed path to a peer came or went. The set is
// fixed so that metrics by reason stay a handful of series.
type pathChange int

const (
	directUp      pathChange = iota // a direct path came up
	directLost                      // a direct path died (idle timeout, peer closed it)
	networkChange                   // a direct path did not survive our network change
	relayUp                         // a relayed path came up
	relayLost                       // a relayed path died
	numPathChanges
)

var pathChangeNames = [numPathChanges]string{"direct_up", "direct_lost", "network_change", "relay_up", "relay_lost"}

// pathChanges counts path changes of all peers since start. It belongs to
// the client, not the peers, so the counts only grow as peers come and go.
type pathChanges [numPathChanges]atomic.Int64

func (pc *pathChanges) add(r pathChange) { pc[r].Add(1) }

// status is every reason with its count, zeros included, so a reason's
// series exists before its first change.
func (pc *pathChanges) status() map[string]int64 {
	m := make(map[string]int64, numPathChanges)
	for r := range numPathChanges {
		m[pathChangeNames[r]] = pc[r].Load()
	}
	return m
}
