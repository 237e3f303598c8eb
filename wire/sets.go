package wire

// Set is the kinds of message one link carries in one direction; Read
// refuses the others. The zero Set accepts nothing.
type Set struct {
	name  string
	kinds map[string]bool
}

func newSet(name string, ms ...Message) Set {
	s := Set{name: name, kinds: map[string]bool{}}
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
	ClientToControl = newSet("client→control", (*Hello)(nil), (*Announce)(nil), (*Withdraw)(nil),
		(*Candidates)(nil), (*PunchRequest)(nil), (*PunchReady)(nil))
	ControlToClient = newSet("control→client", (*Welcome)(nil), (*Error)(nil), (*Peers)(nil),
		(*Relays)(nil), (*Punch)(nil), (*PunchGo)(nil))
	RelayToControl = newSet("relay→control", (*RelayHello)(nil))
	ControlToRelay = newSet("control→relay", (*Welcome)(nil), (*Error)(nil), (*RelayAuth)(nil))
	// RelayToClient is the welcome on the relay's unidirectional stream.
	RelayToClient = newSet("relay→client", (*Welcome)(nil))
	// PeerStream is the header of every proxied stream, source→destination.
	PeerStream = newSet("peer stream", (*Connect)(nil))
)
