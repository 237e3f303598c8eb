package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/connetd/connetd/identity"
)

// Probe datagrams share the direct socket with QUIC. Their first byte has
// the 0x40 bit clear, so quic-go hands them to Transport.ReadNonQUICPacket;
// a three-byte magic follows so that stray datagrams are told apart.
//
// Punch probes, between two peers during a punch attempt:
//
//	byte 0       ProbePing or ProbePong
//	bytes 1-3    ProbeMagic
//	bytes 4-11   the attempt's nonce (from control's punch message)
//	bytes 12-27  sender's peer ID
//	bytes 28-43  receiver's peer ID
//	bytes 44-61  pong: the address the ping came from (see PutAddr);
//	             ping: zeros, so that a ping is as long as its pong and a
//	             forged source address buys no amplification
//
// Reflect datagrams, between a client's direct socket and control or a relay,
// tell the client its public address toward that server (like a STUN
// binding request):
//
//	byte 0       ReflectRequest or ReflectReply
//	bytes 1-3    ProbeMagic
//	bytes 4-15   transaction ID, chosen by the client
//	bytes 16-33  reply: the address the request came from;
//	             request: zeros, so that a request is as long as its reply
//	             and a forged source address buys no amplification
const (
	ProbePing      = 0x02
	ProbePong      = 0x03
	ReflectRequest = 0x04
	ReflectReply   = 0x05
)

// ProbeMagic follows the type byte of every probe or reflect datagram.
var ProbeMagic = [3]byte{'c', 'n', 'd'}

// Sizes of the datagrams above.
const (
	AddrLen         = 18
	probeHeaderLen  = 4
	probeIDsEnd     = probeHeaderLen + PunchNonceLen + 2*len(identity.ID{})
	PongLen         = probeIDsEnd + AddrLen
	PingLen         = PongLen // padded: see above
	ReflectTxIDLen  = 12
	ReflectReplyLen = probeHeaderLen + ReflectTxIDLen + AddrLen
	ReflectReqLen   = ReflectReplyLen // padded: see above
)

// ErrNotProbe marks bytes that are not a well-formed probe or reflect datagram.
var ErrNotProbe = errors.New("not a probe datagram")

// Probe is a decoded punch probe.
type Probe struct {
	Pong     bool
	Nonce    [PunchNonceLen]byte
	From, To identity.ID
	Observed netip.AddrPort // pongs only
}

// Reflect is a decoded reflect datagram.
type Reflect struct {
	Reply    bool
	TxID     [ReflectTxIDLen]byte
	Observed netip.AddrPort // replies only
}

// IsProbe is the cheap test for datagrams that belong to this file.
func IsProbe(b []byte) bool {
	return len(b) >= probeHeaderLen && b[0] >= ProbePing && b[0] <= ReflectReply && bytes.Equal(b[1:4], ProbeMagic[:])
}

func header(kind byte) []byte {
	return []byte{kind, ProbeMagic[0], ProbeMagic[1], ProbeMagic[2]}
}

// PutAddr encodes a as 16 bytes of IPv6 (IPv4 mapped) and a big-endian port.
func PutAddr(b []byte, a netip.AddrPort) {
	ip := a.Addr().As16()
	copy(b, ip[:])
	binary.BigEndian.PutUint16(b[16:], a.Port())
}

// ParseAddr decodes PutAddr's encoding; IPv4-mapped addresses are unmapped.
func ParseAddr(b []byte) netip.AddrPort {
	ip := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[16:18]))
}

// AppendProbe encodes p.
func AppendProbe(b []byte, p Probe) []byte {
	kind := byte(ProbePing)
	if p.Pong {
		kind = ProbePong
	}
	b = append(b, header(kind)...)
	b = append(b, p.Nonce[:]...)
	b = append(b, p.From[:]...)
	b = append(b, p.To[:]...)
	var a [AddrLen]byte // a ping's padding
	if p.Pong {
		PutAddr(a[:], p.Observed)
	}
	return append(b, a[:]...)
}

// ParseProbe decodes a ping or pong. Trailing bytes are refused, so that a
// later version that adds fields uses a new type byte.
func ParseProbe(b []byte) (Probe, error) {
	var p Probe
	if !IsProbe(b) || (b[0] != ProbePing && b[0] != ProbePong) {
		return p, ErrNotProbe
	}
	p.Pong = b[0] == ProbePong
	if len(b) != PongLen {
		return p, ErrNotProbe
	}
	o := probeHeaderLen
	copy(p.Nonce[:], b[o:])
	o += PunchNonceLen
	copy(p.From[:], b[o:])
	o += len(p.From)
	copy(p.To[:], b[o:])
	o += len(p.To)
	if p.Pong {
		p.Observed = ParseAddr(b[o:])
	} else if !bytes.Equal(b[o:], make([]byte, AddrLen)) {
		return p, ErrNotProbe // padding must be zeros: one encoding per ping
	}
	return p, nil
}

// AppendReflect encodes r.
func AppendReflect(b []byte, r Reflect) []byte {
	kind := byte(ReflectRequest)
	if r.Reply {
		kind = ReflectReply
	}
	b = append(b, header(kind)...)
	b = append(b, r.TxID[:]...)
	var a [AddrLen]byte // a request's padding
	if r.Reply {
		PutAddr(a[:], r.Observed)
	}
	return append(b, a[:]...)
}

// ParseReflect decodes a reflect request or reply.
func ParseReflect(b []byte) (Reflect, error) {
	var r Reflect
	if !IsProbe(b) || (b[0] != ReflectRequest && b[0] != ReflectReply) {
		return r, ErrNotProbe
	}
	r.Reply = b[0] == ReflectReply
	if len(b) != ReflectReplyLen {
		return r, ErrNotProbe
	}
	copy(r.TxID[:], b[probeHeaderLen:])
	rest := b[probeHeaderLen+ReflectTxIDLen:]
	if r.Reply {
		r.Observed = ParseAddr(rest)
	} else if !bytes.Equal(rest, make([]byte, AddrLen)) {
		return r, ErrNotProbe // padding must be zeros: one encoding per request
	}
	return r, nil
}

// AnswerReflect returns the reply to a reflect request received from
// `from`, or nil when b is not a reflect request. Control and relays call it
// for every non-QUIC datagram on the sockets clients reach them on (after
// their per-source rate limit). The reply is exactly as long as the
// request.
func AnswerReflect(b []byte, from netip.AddrPort) []byte {
	r, err := ParseReflect(b)
	if err != nil || r.Reply {
		return nil
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	return AppendReflect(nil, Reflect{Reply: true, TxID: r.TxID, Observed: from})
}
