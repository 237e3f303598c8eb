package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Flow acknowledgements travel on one unidirectional stream per peer
// connection and direction (ALPNPeerResumable only): the type byte
// AckStreamType, then records of FlowAckSize bytes:
//
//	flow     uint64  the flow's ID (Connect.Flow)
//	received uint64  bytes of the flow written to the local TCP side
//	flags    byte    FlowAckFIN, FlowAckOpener
//
// They let the sender of a resumable flow drop what it keeps for resending
// (docs/protocol.md §4.7).
const (
	AckStreamType = 'A'
	FlowAckSize   = 17
	// FlowAckFIN: the flow's FIN was read as well.
	FlowAckFIN = 1 << 0
	// FlowAckOpener: the receiver of the record opened the flow (the
	// record's sender is its destination). Both clients of a pair may
	// be source and destination to each other, and each picks IDs for
	// the flows it opens.
	FlowAckOpener = 1 << 1
	flowAckKnown  = FlowAckFIN | FlowAckOpener
)

// FlowAck is one acknowledgement record.
type FlowAck struct {
	Flow     uint64
	Received uint64
	FIN      bool
	Opener   bool
}

// Append appends the record's encoding to b.
func (a FlowAck) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, a.Flow)
	b = binary.BigEndian.AppendUint64(b, a.Received)
	var f byte
	if a.FIN {
		f |= FlowAckFIN
	}
	if a.Opener {
		f |= FlowAckOpener
	}
	return append(b, f)
}

// ParseFlowAck decodes one record of exactly FlowAckSize bytes.
func ParseFlowAck(b []byte) (FlowAck, error) {
	if len(b) != FlowAckSize {
		return FlowAck{}, fmt.Errorf("flow ack of %d bytes, want %d", len(b), FlowAckSize)
	}
	f := b[16]
	if f&^flowAckKnown != 0 {
		return FlowAck{}, fmt.Errorf("flow ack with unknown flags %#x", f)
	}
	return FlowAck{
		Flow:     binary.BigEndian.Uint64(b),
		Received: binary.BigEndian.Uint64(b[8:]),
		FIN:      f&FlowAckFIN != 0,
		Opener:   f&FlowAckOpener != 0,
	}, nil
}

// ReadAckStreamType reads and checks the first byte of an ack stream.
func ReadAckStreamType(r io.Reader) error {
	var t [1]byte
	if _, err := io.ReadFull(r, t[:]); err != nil {
		return fmt.Errorf("read ack stream type: %w", err)
	}
	if t[0] != AckStreamType {
		return fmt.Errorf("unidirectional stream of type %#x, want ack stream", t[0])
	}
	return nil
}
