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
)

// One ALPN per kind of link; the suffix is the protocol version.
const (
	ALPNClientControl = "connetd-client-control/1"
	ALPNRelayControl  = "connetd-relay-control/2" // /2: the relay table travels as relay_auth_delta
	ALPNClientRelay   = "connetd-client-relay/1"
	ALPNPeer          = "connetd-peer/1"
	// ALPNPeerResumable is ALPNPeer plus resumable TCP flows (Resume,
	// Resumed, ack records on a unidirectional stream; docs/protocol.md
	// §4.7). Both ends offer it first and ALPNPeer second, so a connection
	// to a client from before it falls back to /1 and its flows stay tied
	// to their path.
	ALPNPeerResumable = "connetd-peer/2"
)

// ALPNRelayControlV1 is what relays before relay_auth_delta offer. Control
// still accepts it, only to answer its hello with an Error that tells the
// relay to upgrade: a mismatched ALPN alone fails with a bare TLS alert.
const ALPNRelayControlV1 = "connetd-relay-control/1"

// Stream error codes (QUIC application error codes on peer streams).
const (
	StreamUnknownEndpoint = 0x10
	StreamDialFailed      = 0x11
	StreamBadRequest      = 0x12
	StreamAborted         = 0x13
	// StreamWrongProtocol: the endpoint exists but carries the other
	// protocol (a udp source reached a tcp destination, or the reverse).
	StreamWrongProtocol = 0x14
	// StreamFlowLimit: the destination holds as many UDP flows for the
	// endpoint as it allows; the flow is refused and counted.
	StreamFlowLimit = 0x15
	// StreamFlowIdle: a UDP flow's stream closed because no datagram
	// moved for the idle timeout.
	StreamFlowIdle = 0x16
	// StreamMoved: the flow this stream carried went on over another
	// stream (a resume); the bytes in flight on this one are resent there.
	StreamMoved = 0x17
	// StreamUnknownFlow: a resume named a flow the destination does not
	// hold (it ended, timed out, or never existed).
	StreamUnknownFlow = 0x18
)

// Connection error codes (QUIC application error codes on connections).
const (
	ConnNormal       = 0x0
	ConnUnauthorized = 0x1
	ConnShutdown     = 0x2
	ConnProtocol     = 0x3
	ConnReplaced     = 0x4
)

// MaxFrame bounds one message so a hostile peer cannot make us allocate
// without limit.
const MaxFrame = 4 << 20

// ErrFrameTooLarge is returned for a length prefix above MaxFrame.
var ErrFrameTooLarge = errors.New("frame exceeds size limit")

// ErrUnexpectedKind is returned by Read for a well-formed message whose kind
// the link does not carry in that direction (or that this version does not
// know); the error names the kind.
var ErrUnexpectedKind = errors.New("unexpected message")

// Write sends one message: a 4-byte big-endian length, then the JSON
// envelope {"kind": {...}}.
func Write(w io.Writer, m Message) error {
	frame, err := encode(m)
	if err != nil {
		return err
	}
	if _, err := w.Write(frame); err != nil {
		return fmt.Errorf("write %s: %w", m.kind(), err)
	}
	return nil
}

func encode(m Message) ([]byte, error) {
	if m == nil {
		return nil, errors.New("encode message: nil")
	}
	var inner bytes.Buffer
	e := json.NewEncoder(&inner)
	e.SetEscapeHTML(false) // keep re-encoded bodies the size they arrived
	if err := e.Encode(m); err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.kind(), err)
	}
	member := bytes.TrimSuffix(inner.Bytes(), []byte("\n"))
	if string(member) == "null" {
		return nil, fmt.Errorf("encode %s: nil", m.kind())
	}
	// Kinds are plain lower-case names, so they need no JSON escaping.
	n := len(`{"":}`) + len(m.kind()) + len(member)
	if n > MaxFrame {
		return nil, ErrFrameTooLarge
	}
	frame := make([]byte, 0, 4+n)
	frame = binary.BigEndian.AppendUint32(frame, uint32(n))
	frame = append(frame, `{"`...)
	frame = append(frame, m.kind()...)
	frame = append(frame, `":`...)
	frame = append(frame, member...)
	return append(frame, '}'), nil
}

// Read receives one message written by Write, of a kind in set (the link and
// direction it is read on); callers switch on its type. Unknown fields inside
// the message are ignored so that a newer peer can add fields.
func Read(r io.Reader, set Set) (Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > uint32(set.maxFrame) {
		return nil, fmt.Errorf("%w: %d bytes on %s (at most %d)", ErrFrameTooLarge, n, set.name, set.maxFrame)
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
	return decode(buf.Bytes(), set)
}

// decode parses one body: the envelope's single key names the type, and
// only then is the member decoded, into that type.
func decode(body []byte, set Set) (Message, error) {
	kind, member, err := envelope(body)
	if err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	if !set.kinds[kind] {
		if len(kind) > 64 {
			kind = kind[:64] + "..."
		}
		return nil, fmt.Errorf("%w %q on %s", ErrUnexpectedKind, kind, set)
	}
	m := constructors[kind]()
	if err := json.Unmarshal(member, m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, err)
	}
	return m, nil
}

// envelope splits {"kind": {...}} into its key and its member, refusing
// anything else: no member, several, a member that is not an object, or
// data after the envelope.
func envelope(body []byte) (string, []byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", nil, errors.New("message is not a JSON object")
	}
	t, err := dec.Token()
	if err != nil {
		return "", nil, err
	}
	kind, ok := t.(string)
	if !ok {
		return "", nil, errors.New("message has no member")
	}
	var member json.RawMessage
	if err := dec.Decode(&member); err != nil {
		return "", nil, err
	}
	if trimmed := bytes.TrimSpace(member); len(trimmed) == 0 || trimmed[0] != '{' {
		return "", nil, fmt.Errorf("member of %q is not an object", kind)
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return "", nil, errors.New("message has more than one member")
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", nil, errors.New("data after the message")
	}
	return kind, member, nil
}
