package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/portmap"
)

func testServer(t testing.TB) (*server, *[]string) {
	var rules []string
	ruleFunc = func(op string, m *mapping) error {
		rules = append(rules, op+" "+m.internal.String())
		return nil
	}
	t.Cleanup(func() { ruleFunc = iptables })
	return &server{external: netip.MustParseAddr("198.51.100.1"), epoch: time.Now(), maps: map[netip.AddrPort]*mapping{}, pcp: true}, &rules
}

func TestPCPRequestInstallsAndDeletesARule(t *testing.T) {
	s, rules := testServer(t)
	from := netip.MustParseAddrPort("10.1.0.10:40000")
	req := portmap.PCPMap{Lifetime: 600, Client: from.Addr(), Protocol: portmap.ProtoUDP, Internal: 19192,
		External: netip.AddrPortFrom(netip.IPv4Unspecified(), 19192)}
	resp, err := portmap.ParsePCPMap(s.handle(portmap.AppendPCPMap(nil, req), from, time.Hour))
	if err != nil || resp.Result != 0 || resp.External != netip.MustParseAddrPort("198.51.100.1:19192") || resp.Lifetime != 600 {
		t.Fatalf("response %+v, %v", resp, err)
	}
	req.Lifetime = 0
	s.handle(portmap.AppendPCPMap(nil, req), from, time.Hour)
	if got := strings.Join(*rules, ","); got != "-A 10.1.0.10:19192,-D 10.1.0.10:19192" {
		t.Fatalf("rules %s", got)
	}
	// A request naming another client address is refused.
	req.Lifetime, req.Client = 600, netip.MustParseAddr("10.1.0.99")
	if resp, _ := portmap.ParsePCPMap(s.handle(portmap.AppendPCPMap(nil, req), from, time.Hour)); resp.Result == 0 {
		t.Fatal("mapped for a client address that is not the sender's")
	}
}

func TestSOAPArgumentsAreTheActionsChildren(t *testing.T) {
	body := `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>` +
		`<u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"><NewExternalPort>19192</NewExternalPort>` +
		`<NewProtocol>UDP</NewProtocol></u:AddPortMapping></s:Body></s:Envelope>`
	args, err := soapArgs(strings.NewReader(body))
	if err != nil || args["NewExternalPort"] != "19192" || args["NewProtocol"] != "UDP" {
		t.Fatalf("args %v, %v", args, err)
	}
}

// FuzzRequests feeds arbitrary datagrams and SOAP bodies to the responder:
// it never panics, and answers only with well-formed messages.
func FuzzRequests(f *testing.F) {
	f.Add(portmap.AppendPMPAddrRequest(nil))
	f.Add(portmap.AppendPMPMapRequest(nil, portmap.PMPMapRequest{Internal: 1, SuggestedExt: 2, Lifetime: 3}))
	f.Add(portmap.AppendPCPMap(nil, portmap.PCPMap{Client: netip.MustParseAddr("10.1.0.10"), Protocol: 17, Internal: 5}))
	f.Add([]byte(`<a><b><c><d>1</d></c></b></a>`))
	f.Add([]byte{})
	s, _ := testServer(f)
	from := netip.MustParseAddrPort("10.1.0.10:5351")
	f.Fuzz(func(t *testing.T, b []byte) {
		if reply := s.handle(b, from, time.Minute); reply != nil {
			_, e1 := portmap.ParsePCPMap(reply)
			_, e2 := portmap.ParsePMPAddrResponse(reply)
			_, e3 := portmap.ParsePMPMapResponse(reply)
			if e1 != nil && e2 != nil && e3 != nil && !portmap.PCPUnsupportedVersion(reply) {
				t.Fatalf("answered % x with an unparsable % x", b, reply)
			}
		}
		_, _ = soapArgs(bytes.NewReader(b))
	})
}
