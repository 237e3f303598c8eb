package portmap

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
)

// The exact bytes of RFC 6886 and RFC 6887 messages.
func TestWireLayouts(t *testing.T) {
	req := AppendPMPMapRequest(nil, PMPMapRequest{Internal: 0x4b00, SuggestedExt: 0x4b01, Lifetime: 7200})
	if want := []byte{0, 1, 0, 0, 0x4b, 0x00, 0x4b, 0x01, 0, 0, 0x1c, 0x20}; !bytes.Equal(req, want) {
		t.Fatalf("NAT-PMP map request % x, want % x", req, want)
	}
	resp := AppendPMPMapResponse(nil, PMPMapResponse{Epoch: 5, Internal: 1, External: 2, Lifetime: 3})
	if want := []byte{0, 129, 0, 0, 0, 0, 0, 5, 0, 1, 0, 2, 0, 0, 0, 3}; !bytes.Equal(resp, want) {
		t.Fatalf("NAT-PMP map response % x", resp)
	}
	m := PCPMap{Lifetime: 60, Client: netip.MustParseAddr("10.0.0.2"), Nonce: [12]byte{1, 2, 3}, Protocol: ProtoUDP,
		Internal: 19192, External: netip.AddrPortFrom(netip.IPv4Unspecified(), 19192)}
	b := AppendPCPMap(nil, m)
	if len(b) != 60 || b[0] != 2 || b[1] != 1 || !bytes.Equal(b[8:24], append(make([]byte, 10), 0xff, 0xff, 10, 0, 0, 2)) || b[36] != 17 {
		t.Fatalf("PCP map request % x", b)
	}
	got, err := ParsePCPMap(b)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("ParsePCPMap = %+v, %v; want %+v", got, err, m)
	}
	if !PCPUnsupportedVersion(AppendPCPUnsupported(nil)) {
		t.Fatal("unsupported-version answer not recognized")
	}
}

// FuzzPortMapMessages feeds arbitrary datagrams (what a router, or anyone
// on the LAN, could send) to every decoder: none panics, and what one
// accepts re-encodes to a message that decodes the same.
func FuzzPortMapMessages(f *testing.F) {
	f.Add(AppendPMPAddrResponse(nil, PMPAddrResponse{External: netip.MustParseAddr("192.0.2.1")}))
	f.Add(AppendPMPMapResponse(nil, PMPMapResponse{Internal: 1, External: 2, Lifetime: 3}))
	f.Add(AppendPMPMapRequest(nil, PMPMapRequest{Internal: 1}))
	f.Add(AppendPMPAddrRequest(nil))
	f.Add(AppendPCPMap(nil, PCPMap{Response: true, External: netip.MustParseAddrPort("192.0.2.1:5")}))
	f.Add(AppendPCPMap(nil, PCPMap{Client: netip.MustParseAddr("2001:db8::1")}))
	f.Add(AppendPCPUnsupported(nil))
	f.Add([]byte{2, 0x81, 0, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ParsePMPAddrResponse(b); err == nil && r.Result == ResultSuccess {
			if r2, err := ParsePMPAddrResponse(AppendPMPAddrResponse(nil, r)); err != nil || r2 != r {
				t.Fatalf("address response %+v does not survive re-encoding", r)
			}
		}
		if r, err := ParsePMPMapResponse(b); err == nil && r.Result == ResultSuccess {
			if r2, err := ParsePMPMapResponse(AppendPMPMapResponse(nil, r)); err != nil || r2 != r {
				t.Fatalf("map response %+v does not survive re-encoding", r)
			}
		}
		if r, err := ParsePMPRequest(b); err == nil && !r.AddrOnly {
			if r2, err := ParsePMPRequest(AppendPMPMapRequest(nil, r.Map)); err != nil || r2 != r {
				t.Fatalf("request %+v does not survive re-encoding", r)
			}
		}
		if m, err := ParsePCPMap(b); err == nil && (!m.Response || len(b) >= pcpMapMsgLen) {
			m2, err := ParsePCPMap(AppendPCPMap(nil, m))
			if err != nil || !sameMap(m, m2) {
				t.Fatalf("PCP %+v re-encodes to %+v, %v", m, m2, err)
			}
		}
		_ = PCPUnsupportedVersion(b)
	})
}

// sameMap compares what survives encoding: an all-zero IPv6 address and an
// unset one encode alike.
func sameMap(a, b PCPMap) bool {
	norm := func(m PCPMap) PCPMap {
		if !m.Client.IsValid() {
			m.Client = netip.IPv6Unspecified()
		}
		if !m.External.Addr().IsValid() {
			m.External = netip.AddrPortFrom(netip.IPv6Unspecified(), m.External.Port())
		}
		if m.Response {
			m.Client = netip.IPv6Unspecified()
		} else {
			m.Result, m.Epoch = 0, 0
		}
		return m
	}
	return norm(a) == norm(b)
}
