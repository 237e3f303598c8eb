package main

import (
	"strings"
	"testing"
)

// healthyStatus is a client with control, a relay and one direct peer, and
// buffers as big as QUIC wants.
func healthyStatus() diagStatus {
	return diagStatus{
		Role: "client", ServerAddr: "ctl.example:19190", Control: "connected", Observed: "198.51.100.7:40000", NAT: "easy",
		Relays:     []diagRelay{{ID: "relay1", Addr: "198.51.100.2:19191", Connected: true}},
		UDPBuffers: map[string]diagBufferSize{"direct": {Receive: 14 << 20, Send: 14 << 20}},
		Sources: []diagEndpoint{{Name: "web", Route: "any", Peers: []diagPeer{
			{ID: "peer1peer1", Route: "any", Path: "direct", NAT: "easy"}}}},
	}
}

func TestDiagnoseRanksTheFirstProblem(t *testing.T) {
	tests := []struct {
		name   string
		change func(*diagStatus, *hostFacts)
		first  string // substring of the first problem; "" for healthy
		advice string // substring of its advice
		count  int
	}{
		{name: "healthy", change: func(*diagStatus, *hostFacts) {}},
		{name: "control down outranks everything", change: func(s *diagStatus, _ *hostFacts) {
			s.Control = "connecting"
			s.Relays[0].Connected = false
			s.Sources[0].Peers[0].Path = "none"
			s.UDPBuffers["direct"] = diagBufferSize{Receive: 208 << 10, Send: 208 << 10}
		}, first: "control unreachable (ctl.example:19190", advice: "UDP/19190 is allowed", count: 4},
		{name: "clock skew after control, before peers", change: func(s *diagStatus, _ *hostFacts) {
			skew := int64(-45_000)
			s.ClockSkewMs = &skew
			s.Sources[0].Peers[0].Path = "none"
		}, first: "clock skew: control is 45s behind (more than 30s)", advice: "synchronize the clocks", count: 2},
		{name: "small clock skew is fine", change: func(s *diagStatus, _ *hostFacts) {
			skew := int64(29_000)
			s.ClockSkewMs = &skew
		}},
		{name: "refused endpoint before peers", change: func(s *diagStatus, _ *hostFacts) {
			s.Sources[0].Refused = "route conflict"
			s.Sources[0].Peers[0].Path = "none"
		}, first: "source web refused by control: route conflict", count: 2},
		{name: "no path and no relay", change: func(s *diagStatus, _ *hostFacts) {
			s.Relays[0].Connected = false
			s.Sources[0].Peers[0].Path = "none"
			s.Sources[0].Peers[0].Error = "timeout"
		}, first: "peer peer1pee of source web has no path: no relay connected and no direct path (last: timeout)", advice: "relays are reachable", count: 2},
		{name: "relay down before a relayed peer", change: func(s *diagStatus, _ *hostFacts) {
			s.Relays = append(s.Relays, diagRelay{ID: "relay2", Addr: "203.0.113.9:19191"})
			s.Sources[0].Peers[0].Path = "relay"
		}, first: "relay relay2 (203.0.113.9:19191) unreachable", advice: "allow UDP to 203.0.113.9:19191", count: 2},
		{name: "both hard", change: func(s *diagStatus, _ *hostFacts) {
			s.NAT = "hard"
			p := &s.Sources[0].Peers[0]
			p.Path, p.NAT, p.PunchAttempts, p.Error = "relay", "hard", 3, "no answer"
		}, first: "peer peer1pee of source web relayed: both sides hard NAT (3 punch attempts, last: no answer)", advice: "enable port mapping (UPnP/NAT-PMP/PCP) on one router", count: 1},
		{name: "we are hard behind CGNAT", change: func(s *diagStatus, _ *hostFacts) {
			s.NAT, s.Observed = "hard", "100.72.1.2:5000"
			s.Sources[0].Peers[0].Path = "relay"
		}, first: "this host is behind a hard NAT", advice: "carrier-grade NAT", count: 1},
		{name: "we are hard with a mapping", change: func(s *diagStatus, _ *hostFacts) {
			s.NAT, s.PortMapping = "hard", "pcp 198.51.100.7:19192"
			p := &s.Sources[0].Peers[0]
			p.Path, p.NAT = "relay", "hard"
		}, first: "port mapping did not lead to a direct path", advice: "forwards the mapped port", count: 1},
		{name: "peer hard", change: func(s *diagStatus, _ *hostFacts) {
			p := &s.Sources[0].Peers[0]
			p.Path, p.NAT = "relay", "hard"
		}, first: "the peer is behind a hard NAT", advice: "the peer's router", count: 1},
		{name: "relay route is expected", change: func(s *diagStatus, _ *hostFacts) {
			s.Sources[0].Peers[0].Path = "relay"
			s.Sources[0].Peers[0].Route = "relay"
		}},
		{name: "direct route forbids the relay", change: func(s *diagStatus, _ *hostFacts) {
			s.Sources[0].Route = "direct"
			p := &s.Sources[0].Peers[0]
			p.Path, p.NAT = "none", "hard"
		}, first: "route direct forbids the relay and NATs are easy/hard", advice: "allow route any", count: 1},
		{name: "small receive buffer", change: func(s *diagStatus, _ *hostFacts) {
			s.UDPBuffers["direct"] = diagBufferSize{Receive: 208 << 10, Send: 14 << 20}
		}, first: "UDP receive buffer 208 KiB < 7 MiB recommended", advice: "sysctl drop-in", count: 1},
		{name: "sysctl fallback without sockets", change: func(s *diagStatus, h *hostFacts) {
			s.UDPBuffers = nil
			h.RmemMax, h.WmemMax = 212992, wantSysctlMax
		}, first: "net.core.rmem_max 208 KiB < 7324 KiB recommended", count: 1},
		{name: "destination peer relayed, NAT unknown", change: func(s *diagStatus, _ *hostFacts) {
			s.Sources = nil
			s.NAT = "unknown"
			s.Destinations = []diagEndpoint{{Name: "db", Peers: []diagPeer{{ID: "p2", Path: "relay", NAT: "easy"}}}}
		}, first: "peer p2 of destination db relayed: NAT kind unknown", count: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, h := healthyStatus(), hostFacts{RmemMax: wantSysctlMax, WmemMax: wantSysctlMax}
			tt.change(&st, &h)
			d := diagnose("src", st, h)
			if tt.first == "" {
				if !d.Healthy || len(d.Problems) != 0 {
					t.Fatalf("want healthy, got %+v", d.Problems)
				}
				return
			}
			if d.Healthy || len(d.Problems) != tt.count {
				t.Fatalf("want %d problems, got healthy=%v %+v", tt.count, d.Healthy, d.Problems)
			}
			if got := d.Problems[0].Detail; !strings.Contains(got, tt.first) {
				t.Errorf("first problem %q, want it to contain %q", got, tt.first)
			}
			if got := d.Problems[0].Advice; !strings.Contains(got, tt.advice) {
				t.Errorf("advice %q, want it to contain %q", got, tt.advice)
			}
		})
	}
}

func TestDiagnosePeerReportCarriesTheReason(t *testing.T) {
	st := healthyStatus()
	st.NAT = "hard"
	st.Sources[0].Peers[0].Path, st.Sources[0].Peers[0].NAT = "relay", "hard"
	d := diagnose("src", st, hostFacts{})
	if len(d.Peers) != 1 {
		t.Fatalf("peers: %+v", d.Peers)
	}
	p := d.Peers[0]
	if p.Path != "relay" || !strings.HasPrefix(p.Reason, "both sides hard NAT") || p.OurNAT != "hard" || p.PeerNAT != "hard" {
		t.Errorf("peer report %+v", p)
	}
	out := formatDiagnosis(d)
	for _, want := range []string{"both sides hard NAT", "Problems, most fundamental first:", "1. peer peer1pee", "Clock skew:    not measured"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestDiagnoseShowsTheClockSkew(t *testing.T) {
	st := healthyStatus()
	skew := int64(1500)
	st.ClockSkewMs = &skew
	d := diagnose("src", st, hostFacts{})
	if d.ClockSkewMs == nil || *d.ClockSkewMs != 1500 || !strings.Contains(formatDiagnosis(d), "Clock skew:    control is 1.5s ahead") {
		t.Errorf("skew of 1.5 s: %v\n%s", d.ClockSkew, formatDiagnosis(d))
	}
}

func TestCGNATFromPortMapping(t *testing.T) {
	st := healthyStatus()
	st.PortMapping = "natpmp 100.100.3.4:19192"
	d := diagnose("src", st, hostFacts{})
	if !d.Host.CGNAT || d.Host.CGNATAddr != "100.100.3.4:19192" || d.Host.MappingProtocol != "natpmp" {
		t.Errorf("CGNAT not seen in the port mapping: %+v", d.Host)
	}
	st.PortMapping = "upnp 192.0.2.1:19192"
	if d := diagnose("src", st, hostFacts{}); d.Host.CGNAT {
		t.Errorf("CGNAT reported for a public mapping: %+v", d.Host)
	}
	// A router whose uplink is the carrier's network: its gateway is there.
	st.PortMapping, st.Gateway = "", "100.72.0.1"
	if d := diagnose("src", st, hostFacts{}); !d.Host.CGNAT || d.Host.CGNATAddr != "100.72.0.1 (gateway)" {
		t.Errorf("CGNAT not seen in the gateway: %+v", d.Host)
	}
	st.Gateway = "192.168.1.1"
	if d := diagnose("src", st, hostFacts{}); d.Host.CGNAT {
		t.Errorf("CGNAT reported for a home gateway: %+v", d.Host)
	}
}

func TestDiagnoseOtherRolesCheckOnlyBuffers(t *testing.T) {
	st := diagStatus{Role: "server", UDPBuffers: map[string]diagBufferSize{"clients": {Receive: 1 << 20, Send: 14 << 20}}}
	d := diagnose("server", st, hostFacts{})
	if d.Control != nil || len(d.Problems) != 1 || d.Problems[0].Check != "udp-buffers" {
		t.Errorf("server diagnosis: %+v", d)
	}
}
