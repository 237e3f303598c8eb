package wire

import (
	"fmt"

	"github.com/connetd/connetd/identity"
)

// Message is one framed message: a control-stream message or the header of a
// peer stream. Only the types of this package implement it; Write puts the
// kind in the envelope and Read picks the type from it.
type Message interface {
	kind() string
}

// Kind is the envelope key of m, e.g. "hello"; for logs and errors.
func Kind(m Message) string { return m.kind() }

func (*Hello) kind() string          { return "hello" }
func (*Welcome) kind() string        { return "welcome" }
func (*Error) kind() string          { return "error" }
func (*Announce) kind() string       { return "announce" }
func (*Withdraw) kind() string       { return "withdraw" }
func (*Candidates) kind() string     { return "candidates" }
func (*Peers) kind() string          { return "peers" }
func (*Relays) kind() string         { return "relays" }
func (*RelayHello) kind() string     { return "relay_hello" }
func (*RelayAuthDelta) kind() string { return "relay_auth_delta" }
func (*Connect) kind() string        { return "connect" }
func (*PunchRequest) kind() string   { return "punch_request" }
func (*Punch) kind() string          { return "punch" }
func (*PunchReady) kind() string     { return "punch_ready" }
func (*PunchGo) kind() string        { return "punch_go" }
func (*FlowReady) kind() string      { return "flow_ready" }
func (*Resume) kind() string         { return "resume" }
func (*Resumed) kind() string        { return "resumed" }

// constructors makes an empty message of each kind for the decoder.
var constructors = func() map[string]func() Message {
	m := map[string]func() Message{}
	for _, c := range []func() Message{
		func() Message { return new(Hello) }, func() Message { return new(Welcome) },
		func() Message { return new(Error) }, func() Message { return new(Announce) },
		func() Message { return new(Withdraw) }, func() Message { return new(Candidates) },
		func() Message { return new(Peers) }, func() Message { return new(Relays) },
		func() Message { return new(RelayHello) }, func() Message { return new(RelayAuthDelta) },
		func() Message { return new(Connect) }, func() Message { return new(PunchRequest) },
		func() Message { return new(Punch) }, func() Message { return new(PunchReady) },
		func() Message { return new(PunchGo) }, func() Message { return new(FlowReady) },
		func() Message { return new(Resume) }, func() Message { return new(Resumed) },
	} {
		m[c().kind()] = c
	}
	return m
}()

// Hello is a client's first message to control.
type Hello struct {
	Token   string   `json:"token"`
	Version string   `json:"version"`
	Direct  []string `json:"direct"`        // host:port candidates for direct connections
	NAT     string   `json:"nat,omitempty"` // the client's NAT behaviour, one of the NAT* values
	// Punch says the client takes part in hole punching: control may send
	// it punch and punch_go messages, which an older client would refuse.
	Punch bool `json:"punch,omitempty"`
}

// NAT behaviours a client reports for its direct socket (the mapping
// behaviour of RFC 4787): how peers should try to reach it.
const (
	NATUnknown = ""     // not measured yet
	NATNone    = "none" // the observed address is one of the client's own
	NATEasy    = "easy" // endpoint-independent mapping: one public port for every destination
	NATHard    = "hard" // endpoint-dependent mapping: a new public port per destination
)

// Welcome accepts a Hello or RelayHello.
type Welcome struct {
	Observed string `json:"observed"` // the address control saw the peer come from
	// Time is control's wall clock when it sent the welcome to a client,
	// in Unix milliseconds, so the client can estimate clock skew (which
	// breaks certificate validity and muddles logs across hosts). Zero
	// (absent) from relays and from older controls.
	Time int64 `json:"time,omitempty"`
	// Node is the name of the control node that answered (its
	// node-name), so that a client or relay of a control cluster can say
	// which one it uses. Absent from relays and from older controls;
	// older clients ignore it.
	Node string `json:"node,omitempty"`
}

// Error codes.
const (
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden" // authenticated but not allowed this endpoint/role
	CodeBadRequest   = "bad_request"
	// CodeLimitExceeded: the request would take the client past one of
	// control's bounds (sessions per token, endpoints per client, clients
	// per endpoint, punch requests per minute); the message says which.
	CodeLimitExceeded = "limit_exceeded"
)

// Error refuses a Hello (Endpoint empty; the connection is closed after it),
// one Announce (Endpoint set; the session goes on) or, after the welcome,
// one PunchRequest (Endpoint empty; the session goes on).
type Error struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Endpoint string `json:"endpoint,omitempty"`
	Role     string `json:"role,omitempty"`
}

func (e *Error) Error() string {
	if e.Endpoint != "" {
		return fmt.Sprintf("%s %s %q: %s: %s", "control refused", e.Role, e.Endpoint, e.Code, e.Message)
	}
	return fmt.Sprintf("control refused: %s: %s", e.Code, e.Message)
}

// Routes a source or destination may use.
const (
	RouteAny    = "any"
	RouteDirect = "direct"
	RouteRelay  = "relay"
)

// Announce registers (or updates) an endpoint of the client.
type Announce struct {
	Endpoint string `json:"endpoint"`
	Role     string `json:"role"` // restrict.RoleSource or restrict.RoleDestination
	Route    string `json:"route"`
	// Proto is what the endpoint carries: ProtoTCP (or absent, as from
	// clients before UDP) or ProtoUDP. Control passes it on to the
	// counterparts, so a source finds out a mismatch before it is used.
	Proto string `json:"proto,omitempty"`
}

// Protocols an endpoint carries; the empty string means ProtoTCP.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"
)

// ProtoOf is p with the empty string read as ProtoTCP.
func ProtoOf(p string) string {
	if p == "" {
		return ProtoTCP
	}
	return p
}

// Withdraw removes an endpoint of the client.
type Withdraw struct {
	Endpoint string `json:"endpoint"`
	Role     string `json:"role"`
}

// Candidates replaces the client's direct candidate addresses.
type Candidates struct {
	Direct []string `json:"direct"`
	NAT    string   `json:"nat,omitempty"`
}

// Peer is a counterpart of one of the client's endpoints.
type Peer struct {
	ID     identity.ID `json:"id"`
	Cert   []byte      `json:"cert"` // DER; the receiver pins it
	Direct []string    `json:"direct"`
	Route  string      `json:"route"`
	NAT    string      `json:"nat,omitempty"`
	Proto  string      `json:"proto,omitempty"` // the peer's endpoint's Announce.Proto
}

// Peers is the full current set of counterparts for one endpoint of the
// receiving client: destinations for its source, sources for its destination.
type Peers struct {
	Endpoint string `json:"endpoint"`
	Role     string `json:"role"` // the receiver's role
	Peers    []Peer `json:"peers"`
}

// Relay is a relay server a client may use.
type Relay struct {
	ID   identity.ID `json:"id"`
	Addr string      `json:"addr"` // host:port, as the relay advertises it
	Cert []byte      `json:"cert"` // DER; clients pin it
}

// Relays is the full current set of relays.
type Relays struct {
	Relays []Relay `json:"relays"`
}

// RelayHello is a relay's first message to control. Its certificate is the
// TLS client certificate of the connection.
type RelayHello struct {
	Token string `json:"token"`
	Addr  string `json:"addr"` // advertised host:port for clients
}

// RelayAuthDelta changes the table of which clients may reach each other
// through a relay. Control sends the table in batches: a batch is one or
// more messages, all but the last with More set, and the relay applies a
// batch as a whole (publishing the new table only after its last message),
// so that no table is ever in force half updated. Each message is kept far
// below MaxFrame however big the table, so that its size never breaks the
// link (docs/protocol.md §4.2).
//
// A message is applied in field order: Reset empties the table, Remove
// deletes entries, Set replaces entries wholesale (adding them if new),
// Extend appends IDs to entries (adding them if new). Extend carries the
// rest of an entry too big for one message: it follows that entry's Set
// in the same batch.
type RelayAuthDelta struct {
	Reset  bool            `json:"reset,omitempty"`
	Remove []string        `json:"remove"` // endpoint names
	Set    []RelayEndpoint `json:"set"`
	Extend []RelayEndpoint `json:"extend"`
	More   bool            `json:"more,omitempty"` // another message of this batch follows
}

// RelayAuth is a whole authorization table: what a relay holds after a
// batch of RelayAuthDelta that starts with Reset. It is not a message.
type RelayAuth struct {
	Endpoints []RelayEndpoint `json:"endpoints"`
}

// RelayEndpoint lists the sources and destinations of one endpoint that use
// relays; every source may reach every destination.
type RelayEndpoint struct {
	Endpoint     string        `json:"endpoint"`
	Sources      []identity.ID `json:"sources"`
	Destinations []identity.ID `json:"destinations"`
}

// Connect opens a proxied stream: the first message on every peer stream,
// sent by the source. The TCP bytes follow it.
type Connect struct {
	Endpoint string `json:"endpoint"`
	From     string `json:"from"` // the client's address: for PROXY protocol, and a UDP flow's key
	// Proto is ProtoUDP for a UDP flow (absent for TCP): the stream then
	// carries no bytes, it holds the flow, whose datagrams travel as QUIC
	// DATAGRAM frames tagged with the stream's ID (FlowDatagram). The
	// destination answers with FlowReady before the source sends any.
	Proto string `json:"proto,omitempty"`
	// Ack asks a TCP stream's destination to answer FlowReady once it
	// has dialed its service, before any of the service's bytes: a source
	// that may try another destination learns of a refusal before it
	// sends the client's bytes. Destinations before it ignore the field.
	Ack bool `json:"ack,omitempty"`
	// Flow, on a connection that negotiated ALPNPeerResumable, names a
	// resumable TCP flow (nonzero, chosen at random by the source, unique
	// among the source's flows to this destination): if the stream dies
	// with its path, the flow goes on over another stream (Resume).
	Flow uint64 `json:"flow,omitempty"`
}

// Resume opens a stream that carries on a resumable flow whose stream
// died or is being moved to a better path. Received is how many bytes of
// the flow the source has written to its TCP client: the destination
// resends from there. The destination answers Resumed, and the flow's
// bytes follow, unframed, from those offsets on.
type Resume struct {
	Flow     uint64 `json:"flow"`
	Received uint64 `json:"received"`
}

// Resumed answers Resume: how many bytes of the flow the destination has
// written to its service; the source resends from there.
type Resumed struct {
	Received uint64 `json:"received"`
}

// FlowReady is the destination's answer on a UDP flow's stream: the flow
// is set up and its datagrams may come.
type FlowReady struct{}

// PunchRequest asks control to coordinate hole punching between the sender
// (a source) and Peer (one of its destinations).
type PunchRequest struct {
	Peer identity.ID `json:"peer"`
	// Spray, when set, asks for a many-port attempt whatever the NAT kinds:
	// PunchSpraySource or PunchSprayDestination names the side that opens
	// many sockets; the other probes random ports. A source asks for it
	// after plain attempts failed, e.g. because a NAT kept a stale mapping.
	Spray string `json:"spray,omitempty"`
}

// Values of PunchRequest.Spray and Punch.Mode.
const (
	PunchSpraySource      = "source"
	PunchSprayDestination = "destination"
	PunchModeSpray        = "spray"  // open many sockets toward the peer
	PunchModeRandom       = "random" // probe random ports of the peer
)

// Punch tells a client to take part in punching toward Peer: both sides get
// one with the same Nonce, each naming the other. A client sends opening
// packets, answers PunchReady, and probes at full TTL only after PunchGo.
type Punch struct {
	Nonce  []byte      `json:"nonce"` // PunchNonceLen bytes; also in every probe of this attempt
	Peer   identity.ID `json:"peer"`
	Direct []string    `json:"direct"` // the peer's candidates, observed address first
	NAT    string      `json:"nat,omitempty"`
	Dial   bool        `json:"dial,omitempty"` // the receiver asked for this attempt and dials the path found
	Mode   string      `json:"mode,omitempty"` // "", PunchModeSpray or PunchModeRandom: overrides what the NAT kinds call for
}

// PunchNonceLen is the length of a punch nonce.
const PunchNonceLen = 8

// PunchReady tells control that the sender's opening packets are out.
type PunchReady struct {
	Nonce []byte `json:"nonce"`
}

// PunchGo tells both sides of an attempt that both have opened their NATs
// (or that control stopped waiting): full-TTL probes may start.
type PunchGo struct {
	Nonce []byte `json:"nonce"`
}
