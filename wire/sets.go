package wire

// Set is the kinds of message one link carries in one direction; Read
// refuses the others. The zero Set accepts nothing.
type Set struct {
	name     string
	maxFrame int // the longest message body Read accepts on this set
	kinds    map[string]bool
}

// MaxSmallFrame bounds a message body on the links whose messages are all
// small: what clients and relays send to control (a hello included, which
// arrives before the sender is authenticated) and the peer stream header.
// Only control's peer lists may grow to MaxFrame (relay tables travel in
// pieces far smaller).
const MaxSmallFrame = 64 << 10

func newSet(name string, maxFrame int, ms ...Message) Set {
	s := Set{name: name, maxFrame: maxFrame, kinds: map[string]bool{}}
	for _, m := range ms {
		s.kinds[m.kind()] = true
	}
	return s
}

func (s Set) String() string { return s.name }

// Has reports whether the set carries m's kind.
func (s Set) Has(m Message) bool { return s.kinds[m.kind()] }

// The sets of each link and direction (docs/protocol.md §4.0). A hello
// belongs to its link's set; that it comes first, and only first, is the
// receiver's rule.
var (
	ClientToControl = newSet("client→control", MaxSmallFrame, (*Hello)(nil), (*Announce)(nil), (*Withdraw)(nil),
		(*Candidates)(nil), (*PunchRequest)(nil), (*PunchReady)(nil))
	ControlToClient = newSet("control→client", MaxFrame, (*Welcome)(nil), (*Error)(nil), (*Peers)(nil),
		(*Relays)(nil), (*Punch)(nil), (*PunchGo)(nil))
	RelayToControl = newSet("relay→control", MaxSmallFrame, (*RelayHello)(nil))
	ControlToRelay = newSet("control→relay", MaxFrame, (*Welcome)(nil), (*Error)(nil), (*RelayAuthDelta)(nil))
	// RelayToClient is the welcome on the relay's unidirectional stream.
	RelayToClient = newSet("relay→client", MaxSmallFrame, (*Welcome)(nil))
	// PeerStream is the header of every proxied stream, source→destination.
	PeerStream = newSet("peer stream", MaxSmallFrame, (*Connect)(nil), (*Resume)(nil))
	// ResumeStream is the destination's answer to a resume.
	ResumeStream = newSet("resume stream", MaxSmallFrame, (*Resumed)(nil))
	// FlowStream is the destination's answer on a UDP flow's stream.
	FlowStream = newSet("flow stream", MaxSmallFrame, (*FlowReady)(nil))
)
