package wire

import (
	"errors"

	"github.com/quic-go/quic-go/quicvarint"
)

// A UDP flow's datagram travels in one QUIC DATAGRAM frame (RFC 9221) on
// the peers' end-to-end connection: the ID of the stream that holds the
// flow, as a QUIC variable-length integer, then the payload as is. The
// stream ID is known to both ends without negotiation and unique on the
// connection, so it names the flow for as long as the stream is open.

// MaxFlowHeader is the longest flow header: an 8-byte varint.
const MaxFlowHeader = 8

// FlowHeader is the length of a flow header as a sender writes it: a
// 4-byte varint for every stream ID below 2^30 (the first 268 million
// streams a source opens: bidirectional IDs go up in steps of 4), so
// that the largest payload a flow carries is one number, the
// connection's datagram limit less 4, whatever its stream's ID. A
// receiver takes any minimal or non-minimal length.
const FlowHeader = 4

// ErrFlowDatagram is returned for a datagram too short to name a flow.
var ErrFlowDatagram = errors.New("flow datagram: no flow ID")

// AppendFlowDatagram appends the datagram of flow id carrying payload to
// dst.
func AppendFlowDatagram(dst []byte, id uint64, payload []byte) []byte {
	return append(quicvarint.AppendWithLen(dst, id, FlowHeaderLen(id)), payload...)
}

// FlowHeaderLen is the length of flow id's header.
func FlowHeaderLen(id uint64) int { return max(FlowHeader, quicvarint.Len(id)) }

// ParseFlowDatagram splits a received datagram into its flow ID and
// payload; the payload aliases b.
func ParseFlowDatagram(b []byte) (id uint64, payload []byte, err error) {
	id, n, err := quicvarint.Parse(b)
	if err != nil {
		return 0, nil, ErrFlowDatagram
	}
	return id, b[n:], nil
}
