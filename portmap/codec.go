// Package portmap asks the router for a port mapping of the client's direct
// UDP port, by PCP (RFC 6887), NAT-PMP (RFC 6886) or UPnP IGD, and renews
// and deletes it. This file holds the NAT-PMP and PCP wire formats, both
// sides, so that the lab's responder (natlab/cmd/natpmpd) speaks exactly
// what the client parses.
package portmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Port is where NAT-PMP and PCP servers listen.
const Port = 5351

// NAT-PMP (RFC 6886 §3).
const (
	pmpVersion       = 0
	pmpOpAddr        = 0
	pmpOpMapUDP      = 1
	pmpOpMapTCP      = 2
	pmpReply         = 128
	pmpAddrReqLen    = 2
	pmpAddrRespLen   = 12
	pmpMapReqLen     = 12
	pmpMapRespLen    = 16
	ResultSuccess    = 0
	ResultUnsuppVers = 1 // both protocols: unsupported version
)

// PCP (RFC 6887 §7, §11).
const (
	pcpVersion    = 2
	pcpOpMap      = 1
	pcpResponse   = 0x80
	pcpHeaderLen  = 24
	pcpMapLen     = 36
	pcpMapMsgLen  = pcpHeaderLen + pcpMapLen
	ProtoUDP      = 17
	ProtoTCP      = 6
	pcpNonceLen   = 12
	maxPCPMessage = 1100
)

// ErrMalformed marks a datagram that is not a valid message of the kind
// expected.
var ErrMalformed = errors.New("malformed port mapping message")

// PMPAddrResponse is NAT-PMP's answer to an external address request.
type PMPAddrResponse struct {
	Result   uint16
	Epoch    uint32
	External netip.Addr
}

// PMPMapRequest asks for a mapping (lifetime 0 deletes it).
type PMPMapRequest struct {
	TCP                    bool
	Internal, SuggestedExt uint16
	Lifetime               uint32
}

// PMPMapResponse answers a PMPMapRequest.
type PMPMapResponse struct {
	TCP                bool
	Result             uint16
	Epoch              uint32
	Internal, External uint16
	Lifetime           uint32
}

// AppendPMPAddrRequest encodes an external address request.
func AppendPMPAddrRequest(b []byte) []byte { return append(b, pmpVersion, pmpOpAddr) }

// AppendPMPMapRequest encodes r.
func AppendPMPMapRequest(b []byte, r PMPMapRequest) []byte {
	op := byte(pmpOpMapUDP)
	if r.TCP {
		op = pmpOpMapTCP
	}
	b = append(b, pmpVersion, op, 0, 0)
	b = binary.BigEndian.AppendUint16(b, r.Internal)
	b = binary.BigEndian.AppendUint16(b, r.SuggestedExt)
	return binary.BigEndian.AppendUint32(b, r.Lifetime)
}

// AppendPMPAddrResponse encodes r.
func AppendPMPAddrResponse(b []byte, r PMPAddrResponse) []byte {
	b = append(b, pmpVersion, pmpReply+pmpOpAddr)
	b = binary.BigEndian.AppendUint16(b, r.Result)
	b = binary.BigEndian.AppendUint32(b, r.Epoch)
	ip := r.External.Unmap().As4()
	return append(b, ip[:]...)
}

// AppendPMPMapResponse encodes r.
func AppendPMPMapResponse(b []byte, r PMPMapResponse) []byte {
	op := byte(pmpReply + pmpOpMapUDP)
	if r.TCP {
		op = pmpReply + pmpOpMapTCP
	}
	b = append(b, pmpVersion, op)
	b = binary.BigEndian.AppendUint16(b, r.Result)
	b = binary.BigEndian.AppendUint32(b, r.Epoch)
	b = binary.BigEndian.AppendUint16(b, r.Internal)
	b = binary.BigEndian.AppendUint16(b, r.External)
	return binary.BigEndian.AppendUint32(b, r.Lifetime)
}

// ParsePMPAddrResponse decodes an external address response.
func ParsePMPAddrResponse(b []byte) (PMPAddrResponse, error) {
	var r PMPAddrResponse
	if len(b) < 4 || b[0] != pmpVersion || b[1] != pmpReply+pmpOpAddr {
		return r, ErrMalformed
	}
	r.Result = binary.BigEndian.Uint16(b[2:])
	if r.Result != ResultSuccess {
		return r, nil // error responses may be short
	}
	if len(b) != pmpAddrRespLen {
		return r, ErrMalformed
	}
	r.Epoch = binary.BigEndian.Uint32(b[4:])
	r.External = netip.AddrFrom4([4]byte(b[8:12]))
	return r, nil
}

// ParsePMPMapResponse decodes a mapping response.
func ParsePMPMapResponse(b []byte) (PMPMapResponse, error) {
	var r PMPMapResponse
	if len(b) < 4 || b[0] != pmpVersion || (b[1] != pmpReply+pmpOpMapUDP && b[1] != pmpReply+pmpOpMapTCP) {
		return r, ErrMalformed
	}
	r.TCP = b[1] == pmpReply+pmpOpMapTCP
	r.Result = binary.BigEndian.Uint16(b[2:])
	if r.Result != ResultSuccess {
		return r, nil
	}
	if len(b) != pmpMapRespLen {
		return r, ErrMalformed
	}
	r.Epoch = binary.BigEndian.Uint32(b[4:])
	r.Internal = binary.BigEndian.Uint16(b[8:])
	r.External = binary.BigEndian.Uint16(b[10:])
	r.Lifetime = binary.BigEndian.Uint32(b[12:])
	return r, nil
}

// PMPRequest is any NAT-PMP request, as a server decodes it.
type PMPRequest struct {
	AddrOnly bool
	Map      PMPMapRequest
}

// ParsePMPRequest decodes a NAT-PMP request (server side).
func ParsePMPRequest(b []byte) (PMPRequest, error) {
	var r PMPRequest
	if len(b) < 2 || b[0] != pmpVersion {
		return r, ErrMalformed
	}
	switch {
	case b[1] == pmpOpAddr && len(b) == pmpAddrReqLen:
		r.AddrOnly = true
		return r, nil
	case (b[1] == pmpOpMapUDP || b[1] == pmpOpMapTCP) && len(b) == pmpMapReqLen:
		r.Map = PMPMapRequest{
			TCP:          b[1] == pmpOpMapTCP,
			Internal:     binary.BigEndian.Uint16(b[4:]),
			SuggestedExt: binary.BigEndian.Uint16(b[6:]),
			Lifetime:     binary.BigEndian.Uint32(b[8:]),
		}
		return r, nil
	}
	return r, ErrMalformed
}

// PCPMap is a PCP MAP request or response (RFC 6887 §11).
type PCPMap struct {
	Response bool
	Result   uint8  // responses
	Lifetime uint32 // requested or granted, seconds; 0 deletes
	Epoch    uint32 // responses
	Client   netip.Addr
	Nonce    [pcpNonceLen]byte
	Protocol uint8
	Internal uint16
	External netip.AddrPort // suggested (request) or assigned (response)
}

func put16(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, make([]byte, 16)...)
	}
	ip := a.As16()
	if a.Is4() {
		ip = netip.AddrFrom4(a.As4()).As16() // IPv4-mapped, as PCP requires
	}
	return append(b, ip[:]...)
}

// AppendPCPMap encodes m.
func AppendPCPMap(b []byte, m PCPMap) []byte {
	if m.Response {
		b = append(b, pcpVersion, pcpResponse|pcpOpMap, 0, m.Result)
		b = binary.BigEndian.AppendUint32(b, m.Lifetime)
		b = binary.BigEndian.AppendUint32(b, m.Epoch)
		b = append(b, make([]byte, 12)...)
	} else {
		b = append(b, pcpVersion, pcpOpMap, 0, 0)
		b = binary.BigEndian.AppendUint32(b, m.Lifetime)
		b = put16(b, m.Client)
	}
	b = append(b, m.Nonce[:]...)
	b = append(b, m.Protocol, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, m.Internal)
	b = binary.BigEndian.AppendUint16(b, m.External.Port())
	return put16(b, m.External.Addr())
}

// ParsePCPMap decodes a MAP request or response. Options after the MAP
// payload are ignored (this client sends none and needs none).
func ParsePCPMap(b []byte) (PCPMap, error) {
	var m PCPMap
	if len(b) < 4 || b[0] != pcpVersion {
		return m, ErrMalformed
	}
	if len(b) > maxPCPMessage || len(b)%4 != 0 {
		return m, ErrMalformed
	}
	m.Response = b[1]&pcpResponse != 0
	if b[1]&^pcpResponse != pcpOpMap {
		return m, fmt.Errorf("%w: opcode %d", ErrMalformed, b[1]&^pcpResponse)
	}
	if m.Response {
		m.Result = b[3]
		if len(b) < pcpHeaderLen {
			return m, ErrMalformed
		}
		m.Lifetime = binary.BigEndian.Uint32(b[4:])
		m.Epoch = binary.BigEndian.Uint32(b[8:])
		if m.Result != ResultSuccess && len(b) < pcpMapMsgLen {
			return m, nil // an error response may carry no payload
		}
	} else {
		if len(b) < pcpHeaderLen {
			return m, ErrMalformed
		}
		m.Lifetime = binary.BigEndian.Uint32(b[4:])
		m.Client = netip.AddrFrom16([16]byte(b[8:24])).Unmap()
	}
	if len(b) < pcpMapMsgLen {
		return m, ErrMalformed
	}
	o := b[pcpHeaderLen:]
	copy(m.Nonce[:], o)
	m.Protocol = o[12]
	m.Internal = binary.BigEndian.Uint16(o[16:])
	port := binary.BigEndian.Uint16(o[18:])
	m.External = netip.AddrPortFrom(netip.AddrFrom16([16]byte(o[20:36])).Unmap(), port)
	return m, nil
}

// IsPCP tells a PCP datagram (version 2) from a NAT-PMP one (version 0).
func IsPCP(b []byte) bool { return len(b) > 0 && b[0] == pcpVersion }

// PCPUnsupportedVersion is what a NAT-PMP-only server answers a PCP request
// with (RFC 6887 §9): a NAT-PMP-style header with result 1.
func PCPUnsupportedVersion(b []byte) bool {
	return len(b) >= 4 && b[0] == pmpVersion && binary.BigEndian.Uint16(b[2:]) == ResultUnsuppVers
}

// AppendPCPUnsupported is a NAT-PMP server's answer to a PCP request.
func AppendPCPUnsupported(b []byte) []byte {
	return append(b, pmpVersion, pmpReply, 0, ResultUnsuppVers)
}
