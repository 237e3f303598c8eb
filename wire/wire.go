// Package wire defines everything connetd sends over the network: the ALPN
// names of each kind of link, the length-prefixed messages on control
// streams, the header of each proxied stream, and the relay's data frames.
// docs/protocol.md is the prose description of the same.
package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/connetd/connetd/identity"
)

// One ALPN per kind of link; the suffix is the protocol version.
const (
	ALPNClientControl = "connetd-client-control/1"
	ALPNRelayControl  = "connetd-relay-control/1"
	ALPNClientRelay   = "connetd-client-relay/1"
	ALPNPeer          = "connetd-peer/1"
)

// MaxFrame bounds one message so a hostile peer cannot make us allocate
// without limit.
const MaxFrame = 4 << 20

// ErrFrameTooLarge is returned for a length prefix above MaxFrame.
var ErrFrameTooLarge = errors.New("frame exceeds size limit")

// ErrEmptyMessage is returned for a message with no member set.
var ErrEmptyMessage = errors.New("message has no member set")

// Message is the envelope of every control-stream message: exactly one
// member is set.
type Message struct {
	Hello      *Hello      `json:"hello,omitempty"`
	Welcome    *Welcome    `json:"welcome,omitempty"`
	Error      *Error      `json:"error,omitempty"`
	Announce   *Announce   `json:"announce,omitempty"`
	Withdraw   *Withdraw   `json:"withdraw,omitempty"`
	Candidates *Candidates `json:"candidates,omitempty"`
	Peers      *Peers      `json:"peers,omitempty"`
	Relays     *Relays     `json:"relays,omitempty"`
	RelayHello *RelayHello `json:"relay_hello,omitempty"`
	RelayAuth  *RelayAuth  `json:"relay_auth,omitempty"`
	Connect    *Connect    `json:"connect,omitempty"`

	PunchRequest *PunchRequest `json:"punch_request,omitempty"`
	Punch        *Punch        `json:"punch,omitempty"`
	PunchReady   *PunchReady   `json:"punch_ready,omitempty"`
	PunchGo      *PunchGo      `json:"punch_go,omitempty"`
}

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
}

// Error codes.
const (
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden" // authenticated but not allowed this endpoint/role
	CodeBadRequest   = "bad_request"
	CodeShutdown     = "shutdown"
)

// Error refuses a Hello (Endpoint empty; the connection is closed after it) or
// one Announce (Endpoint set; the session goes on).
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

// RelayAuth is the full current table of which clients may reach each other
// through a relay: it replaces the previous one, so a relay that reconnects
// to control needs no reconciliation.
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
	From     string `json:"from"` // the TCP client's address, for PROXY protocol
}

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

// Stream error codes (QUIC application error codes on peer streams).
const (
	StreamUnknownEndpoint = 0x10
	StreamDialFailed      = 0x11
	StreamBadRequest      = 0x12
	StreamAborted         = 0x13
)

// Connection error codes (QUIC application error codes on connections).
const (
	ConnNormal       = 0x0
	ConnUnauthorized = 0x1
	ConnShutdown     = 0x2
	ConnProtocol     = 0x3
	ConnReplaced     = 0x4
)

func (m *Message) members() int {
	n := 0
	for _, set := range []bool{m.Hello != nil, m.Welcome != nil, m.Error != nil,
		m.Announce != nil, m.Withdraw != nil, m.Candidates != nil, m.Peers != nil,
		m.Relays != nil, m.RelayHello != nil, m.RelayAuth != nil, m.Connect != nil,
		m.PunchRequest != nil, m.Punch != nil, m.PunchReady != nil, m.PunchGo != nil} {
		if set {
			n++
		}
	}
	return n
}

// Write sends one message: a 4-byte big-endian length, then JSON.
func Write(w io.Writer, m *Message) error {
	var enc bytes.Buffer
	e := json.NewEncoder(&enc)
	e.SetEscapeHTML(false) // keep re-encoded bodies the size they arrived
	if err := e.Encode(m); err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	body := bytes.TrimSuffix(enc.Bytes(), []byte("\n"))
	if len(body) > MaxFrame {
		return ErrFrameTooLarge
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write message: %w", err)
	}
	return nil
}

// Read receives one message written by Write. Unknown JSON fields are
// ignored so that a newer peer can add fields; a message with no known
// member, or more than one, is an error.
func Read(r io.Reader) (*Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	// Grow the buffer as bytes arrive rather than trusting the prefix: four
	// bytes must not make us allocate MaxFrame.
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(r, int64(n))); err != nil {
		return nil, fmt.Errorf("read message body: %w", err)
	}
	if buf.Len() < int(n) {
		return nil, fmt.Errorf("read message body: %w", io.ErrUnexpectedEOF)
	}
	return Decode(buf.Bytes())
}

// Decode parses one message body.
func Decode(body []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	switch m.members() {
	case 1:
		return &m, nil
	case 0:
		return nil, ErrEmptyMessage
	default:
		return nil, errors.New("message has more than one member set")
	}
}
