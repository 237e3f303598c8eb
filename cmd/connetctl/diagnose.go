package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Recommended UDP buffer sizes, as the daemon's udpbuf.go wants them: quic-go
// asks for 7 MiB per socket, and the sysctl.d drop-in allows 7500000.
const (
	wantBuffer    = 7 << 20
	wantSysctlMax = 7500000
	sysctlDropIn  = "/usr/lib/sysctl.d/60-connetd.conf"
)

// cgnatRange is RFC 6598 shared address space: an address there outside
// this host means a carrier-grade NAT, whose mappings no home router's UPnP
// or NAT-PMP can open.
var cgnatRange = netip.MustParsePrefix("100.64.0.0/10")

// hostFacts are what connetctl reads on the host itself, since it runs where
// the daemon runs.
type hostFacts struct {
	GlobalIPv6 []string // global unicast IPv6 addresses of the interfaces
	RmemMax    int      // net.core.rmem_max, 0 if unreadable
	WmemMax    int      // net.core.wmem_max, 0 if unreadable
}

// problem is one thing that keeps connections from working well, with what
// to do about it. Problems are ranked: the first is the most fundamental
// (nothing else works without control), so it is the one named on exit.
type problem struct {
	Check  string `json:"check"`
	Detail string `json:"detail"`
	Advice string `json:"advice"`
}

func (p problem) String() string { return p.Detail + ": " + p.Advice }

// diagnosis is what `connetctl diagnose --json` prints.
type diagnosis struct {
	Instance string       `json:"instance"`
	Role     string       `json:"role"`
	Healthy  bool         `json:"healthy"`
	Host     hostReport   `json:"host"`
	Control  *ctlReport   `json:"control,omitempty"`
	Relays   []diagRelay  `json:"relays"`
	Peers    []peerReport `json:"peers"`
	Problems []problem    `json:"problems"`
	// ClockSkew says how far control's clock is from this host's, as
	// the client estimated it from control's welcome; ClockSkewMs is the
	// same in milliseconds (control's minus ours), absent if unknown.
	ClockSkew   string `json:"clock_skew"`
	ClockSkewMs *int64 `json:"clock_skew_ms,omitempty"`
}

type hostReport struct {
	NAT         string   `json:"nat,omitempty"`
	NATBasis    string   `json:"nat_basis,omitempty"`
	CGNAT       bool     `json:"cgnat"`
	CGNATAddr   string   `json:"cgnat_addr,omitempty"`
	GlobalIPv6  []string `json:"global_ipv6"`
	PortMapping string   `json:"port_mapping,omitempty"`
	// MappingProtocol is the protocol that answered (upnp, nat-pmp, pcp).
	MappingProtocol string `json:"port_mapping_protocol,omitempty"`
	// Buffers are the daemon's UDP sockets' sizes by socket; without any,
	// the sysctl limits stand in.
	Buffers     map[string]diagBufferSize `json:"udp_buffers"`
	RmemMax     int                       `json:"rmem_max,omitempty"`
	WmemMax     int                       `json:"wmem_max,omitempty"`
	WantBuffers int                       `json:"udp_buffer_recommended"`
}

type ctlReport struct {
	ServerAddr string `json:"server_addr"`
	State      string `json:"state"`
	Observed   string `json:"observed,omitempty"`
	RTTMicro   int64  `json:"rtt_us,omitempty"`
}

type peerReport struct {
	Endpoint      string `json:"endpoint"`
	Kind          string `json:"kind"` // source or destination: our side
	Peer          string `json:"peer"`
	Path          string `json:"path"`
	Reason        string `json:"reason,omitempty"` // why not direct
	RTTMicro      int64  `json:"rtt_us,omitempty"`
	OurNAT        string `json:"our_nat"`
	PeerNAT       string `json:"peer_nat"`
	OurRoute      string `json:"our_route"`
	PeerRoute     string `json:"peer_route"`
	PunchAttempts int    `json:"punch_attempts"`
	LastError     string `json:"last_error,omitempty"`
}

// diagnose judges a status; it reads nothing itself, so tests can feed it
// any state.
func diagnose(instance string, st diagStatus, h hostFacts) diagnosis {
	d := diagnosis{Instance: instance, Role: st.Role, Relays: []diagRelay{}, Peers: []peerReport{}, Problems: []problem{},
		ClockSkew: skewText(st), ClockSkewMs: st.ClockSkewMs}
	d.Host = hostReport{NAT: st.NAT, NATBasis: st.NATBasis, GlobalIPv6: h.GlobalIPv6, PortMapping: st.PortMapping,
		Buffers: st.UDPBuffers, WantBuffers: wantBuffer}
	if d.Host.GlobalIPv6 == nil {
		d.Host.GlobalIPv6 = []string{}
	}
	if d.Host.Buffers == nil {
		d.Host.Buffers = map[string]diagBufferSize{}
	}
	if f := strings.Fields(st.PortMapping); len(f) > 0 {
		d.Host.MappingProtocol = f[0]
	}
	d.Host.CGNATAddr = cgnatAddr(st)
	d.Host.CGNAT = d.Host.CGNATAddr != ""
	if st.Role == "client" {
		d.Control = &ctlReport{ServerAddr: st.ServerAddr, State: st.Control, Observed: st.Observed, RTTMicro: st.ControlRTT}
		if st.Relays != nil {
			d.Relays = st.Relays
		}
		d.Problems = append(d.Problems, clientProblems(st, &d)...)
	} else {
		d.Host.NAT = ""
	}
	d.Problems = append(d.Problems, bufferProblems(st, h, &d.Host)...)
	d.Healthy = len(d.Problems) == 0
	return d
}

// clientProblems ranks a client's problems: control first (without it no
// peer is found), then a clock far from control's, then endpoints control refused, then peers without any
// path, then unreachable relays (which leave hard-NAT peers without a
// fallback), then peers relayed that could be direct.
func clientProblems(st diagStatus, d *diagnosis) []problem {
	var out []problem
	if st.Control != "connected" {
		out = append(out, problem{Check: "control",
			Detail: fmt.Sprintf("control unreachable (%s, state %s)", st.ServerAddr, dash(st.Control)),
			Advice: fmt.Sprintf("check server-addr and that UDP/%s is allowed to it", portOf(st.ServerAddr, "19190"))})
	}
	if p, ok := skewProblem(st); ok {
		out = append(out, p)
	}
	var none, relayed []problem
	for _, ep := range st.Sources {
		out = append(out, endpointProblems(st, d, "source", ep, &none, &relayed)...)
	}
	for _, ep := range st.Destinations {
		out = append(out, endpointProblems(st, d, "destination", ep, &none, &relayed)...)
	}
	out = append(out, none...)
	for _, r := range st.Relays {
		if !r.Connected {
			out = append(out, problem{Check: "relay",
				Detail: fmt.Sprintf("relay %s (%s) unreachable", shortID(r.ID), r.Addr),
				Advice: fmt.Sprintf("allow UDP to %s; peers that cannot punch through have no fallback without it", r.Addr)})
		}
	}
	return append(out, relayed...)
}

func endpointProblems(st diagStatus, d *diagnosis, kind string, ep diagEndpoint, none, relayed *[]problem) []problem {
	var out []problem
	if ep.Refused != "" {
		out = append(out, problem{Check: "endpoint",
			Detail: fmt.Sprintf("%s %s refused by control: %s", kind, ep.Name, ep.Refused),
			Advice: "fix the endpoint's name or route so that it matches its peers, or check the client token"})
	}
	for _, p := range ep.Peers {
		pr := peerReport{Endpoint: ep.Name, Kind: kind, Peer: p.ID, Path: p.Path, RTTMicro: p.RTTMicro,
			OurNAT: orUnknown(st.NAT), PeerNAT: orUnknown(p.NAT), OurRoute: orAny(ep.Route), PeerRoute: orAny(p.Route),
			PunchAttempts: p.PunchAttempts, LastError: p.Error}
		switch p.Path {
		case "direct":
		case "relay":
			reason, advice, expected := relayReason(pr, d.Host.CGNAT, st.PortMapping != "")
			pr.Reason = reason
			if !expected {
				*relayed = append(*relayed, problem{Check: "peer",
					Detail: fmt.Sprintf("peer %s of %s %s relayed: %s", shortID(p.ID), kind, ep.Name, reason), Advice: advice})
			}
		default:
			reason, advice := noPathReason(pr, st)
			pr.Reason = reason
			*none = append(*none, problem{Check: "peer",
				Detail: fmt.Sprintf("peer %s of %s %s has no path: %s", shortID(p.ID), kind, ep.Name, reason), Advice: advice})
		}
		d.Peers = append(d.Peers, pr)
	}
	return out
}

// relayReason says why a peer is relayed; expected is true when a route
// asks for the relay, which is then no problem.
func relayReason(p peerReport, cgnat, mapped bool) (reason, advice string, expected bool) {
	if p.OurRoute == "relay" || p.PeerRoute == "relay" {
		return "route relay on " + map[bool]string{true: "this side", false: "the peer's side"}[p.OurRoute == "relay"], "", true
	}
	tried := ""
	if p.PunchAttempts > 0 {
		tried = " (" + countOf(p.PunchAttempts, "punch attempt")
		if p.LastError != "" {
			tried += ", last: " + p.LastError
		}
		tried += ")"
	}
	cg := ""
	if cgnat {
		cg = "; this host is behind carrier-grade NAT, so ask the provider for a public or IPv6 address"
	}
	switch {
	case p.OurNAT == "hard" && mapped:
		// A mapping should have made our side reachable: more port
		// mapping is not the answer, the mapping's path is.
		return "this host is behind a hard NAT whose port mapping did not lead to a direct path" + tried,
			"check that the router forwards the mapped port and that no firewall between drops UDP" + cg, false
	case p.OurNAT == "hard" && p.PeerNAT == "hard":
		return "both sides hard NAT" + tried, "enable port mapping (UPnP/NAT-PMP/PCP) on one router" + cg, false
	case p.OurNAT == "hard":
		return "this host is behind a hard NAT" + tried, "enable port mapping (UPnP/NAT-PMP/PCP) on this host's router" + cg, false
	case p.PeerNAT == "hard":
		return "the peer is behind a hard NAT" + tried, "enable port mapping (UPnP/NAT-PMP/PCP) on the peer's router", false
	case p.OurNAT == "unknown" || p.PeerNAT == "unknown":
		return "NAT kind unknown (this host " + p.OurNAT + ", peer " + p.PeerNAT + ")" + tried,
			"make sure a relay is reachable so that the NAT kind can be learned, and that UDP is not blocked", false
	}
	return "hole punching failed" + tried, "check that a firewall allows UDP between the two hosts", false
}

// noPathReason says why a peer has no path at all.
func noPathReason(p peerReport, st diagStatus) (reason, advice string) {
	connected := 0
	for _, r := range st.Relays {
		if r.Connected {
			connected++
		}
	}
	direct := p.OurRoute == "direct" || p.PeerRoute == "direct"
	switch {
	case direct && (p.OurNAT == "hard" || p.PeerNAT == "hard"):
		return fmt.Sprintf("route direct forbids the relay and NATs are %s/%s", p.OurNAT, p.PeerNAT),
			"enable port mapping (UPnP/NAT-PMP/PCP) on the hard side, or allow route any"
	case direct:
		return "route direct forbids the relay and hole punching has not succeeded" + lastErr(p), "check that UDP is allowed between the hosts, or allow route any"
	case connected == 0:
		return "no relay connected and no direct path" + lastErr(p), "check that the relays are reachable over UDP and that control lists one"
	}
	return "still connecting" + lastErr(p), "wait a few seconds and run diagnose again; if it stays so, check the peer's daemon"
}

func lastErr(p peerReport) string {
	if p.LastError == "" {
		return ""
	}
	return " (last: " + p.LastError + ")"
}

// bufferProblems compares the daemon's UDP buffers with what QUIC wants;
// without any socket reported it falls back to the sysctl limits, which cap
// what an unprivileged socket can get.
func bufferProblems(st diagStatus, h hostFacts, hr *hostReport) []problem {
	advice := fmt.Sprintf("install the sysctl drop-in (%s) and run sysctl --system, then restart the instance", sysctlDropIn)
	if len(st.UDPBuffers) > 0 {
		minRecv, minSend := -1, -1
		for _, b := range st.UDPBuffers {
			if minRecv < 0 || b.Receive < minRecv {
				minRecv = b.Receive
			}
			if minSend < 0 || b.Send < minSend {
				minSend = b.Send
			}
		}
		if minRecv < wantBuffer {
			return []problem{{Check: "udp-buffers", Detail: fmt.Sprintf("UDP receive buffer %s < %s recommended", kib(minRecv), kib(wantBuffer)), Advice: advice}}
		}
		if minSend < wantBuffer {
			return []problem{{Check: "udp-buffers", Detail: fmt.Sprintf("UDP send buffer %s < %s recommended", kib(minSend), kib(wantBuffer)), Advice: advice}}
		}
		return nil
	}
	hr.RmemMax, hr.WmemMax = h.RmemMax, h.WmemMax
	if h.RmemMax > 0 && h.RmemMax < wantSysctlMax {
		return []problem{{Check: "udp-buffers", Detail: fmt.Sprintf("net.core.rmem_max %s < %s recommended", kib(h.RmemMax), kib(wantSysctlMax)), Advice: advice}}
	}
	if h.WmemMax > 0 && h.WmemMax < wantSysctlMax {
		return []problem{{Check: "udp-buffers", Detail: fmt.Sprintf("net.core.wmem_max %s < %s recommended", kib(h.WmemMax), kib(wantSysctlMax)), Advice: advice}}
	}
	return nil
}

// cgnatAddr finds a sign of carrier-grade NAT: the address control observed,
// the external address the router's port mapping reported, or the default
// gateway (a router whose own uplink is the carrier's network), in
// 100.64.0.0/10. Our own interface addresses do not count: VPNs such as
// Tailscale use that range locally.
func cgnatAddr(st diagStatus) string {
	cands := []string{st.Observed}
	if f := strings.Fields(st.PortMapping); len(f) == 2 {
		cands = append(cands, f[1])
	}
	for _, c := range cands {
		ap, err := netip.ParseAddrPort(c)
		if err != nil {
			continue
		}
		if cgnatRange.Contains(ap.Addr().Unmap()) {
			return ap.String()
		}
	}
	if gw, err := netip.ParseAddr(st.Gateway); err == nil && cgnatRange.Contains(gw.Unmap()) {
		return gw.String() + " (gateway)"
	}
	return ""
}

func countOf(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func kib(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// portOf is the port of addr, or of the first of a comma-separated list
// of control addresses.
func portOf(addr, def string) string {
	addr, _, _ = strings.Cut(addr, ",")
	if _, p, err := net.SplitHostPort(strings.TrimSpace(addr)); err == nil && p != "" {
		return p
	}
	return def
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}
