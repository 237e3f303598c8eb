package wire

import (
	"errors"

	"github.com/connetd/connetd/identity"
)

// Relay data frames carry the peers' own QUIC packets through a relay:
//
//	byte 0      RelayFrameData (its 0x40 bit is clear, so no QUIC
//	            implementation takes it for a QUIC packet)
//	bytes 1-16  peer ID: the destination when a client sends, the sender
//	            when the relay delivers
//	bytes 17-   the inner QUIC packet, end-to-end encrypted between peers
//
// The relay rewrites the ID in place and forwards; it never sees plaintext.
const (
	RelayFrameData   = 0x01
	RelayFrameHeader = 1 + len(identity.ID{})
)

// ErrNotRelayFrame marks bytes that are not a relay data frame.
var ErrNotRelayFrame = errors.New("not a relay data frame")

// ParseRelayFrame returns the peer ID and inner packet of a data frame; the
// payload aliases b.
func ParseRelayFrame(b []byte) (identity.ID, []byte, error) {
	if len(b) <= RelayFrameHeader || b[0] != RelayFrameData {
		return identity.ID{}, nil, ErrNotRelayFrame
	}
	var id identity.ID
	copy(id[:], b[1:RelayFrameHeader])
	return id, b[RelayFrameHeader:], nil
}

// IsRelayFrame is the cheap test used on the receive path.
func IsRelayFrame(b []byte) bool {
	return len(b) > RelayFrameHeader && b[0] == RelayFrameData
}

// PutRelayHeader writes the frame header for id into b[:RelayFrameHeader].
func PutRelayHeader(b []byte, id identity.ID) {
	b[0] = RelayFrameData
	copy(b[1:RelayFrameHeader], id[:])
}
