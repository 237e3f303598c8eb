package metrics

import (
	"strings"

	"github.com/connetd/connetd/client"
)

// Client labels: endpoint and kind (source or destination) come from the
// configuration; peer is the short ID of a peer serving an endpoint now;
// path and direction take two values each. A departed peer's series end.
var (
	clientControlConnected = newDesc("connetd_client_control_connected",
		"1 while the client is connected to control, else 0.", gaugeKind)
	clientRelaysConnected = newDesc("connetd_client_relays_connected",
		"Relays the client is connected to.", gaugeKind)
	clientEndpointBytes = newDesc("connetd_client_endpoint_bytes_total",
		"Bytes carried for an endpoint, all peers and paths; in is from peers.", counterKind, "endpoint", "kind", "direction")
	clientBytes = newDesc("connetd_client_bytes_total",
		"Bytes carried for an endpoint to or from one peer over one path; in is from the peer.", counterKind, "endpoint", "kind", "peer", "path", "direction")
	clientActive = newDesc("connetd_client_active_connections",
		"TCP connections (or UDP flows) of an endpoint being carried now.", gaugeKind, "endpoint", "kind")
	clientRefused = newDesc("connetd_client_endpoint_refused",
		"1 while control refuses the endpoint (e.g. over a limit), else 0.", gaugeKind, "endpoint", "kind")
	clientPeerPath = newDesc("connetd_client_peer_path",
		"1 for the path an endpoint uses to a peer now: direct, relay or none.", gaugeKind, "endpoint", "kind", "peer", "path")
	clientPeers = newDesc("connetd_client_peers",
		"Distinct peers by the best path any endpoint has to them (direct, relay, none).", gaugeKind, "path")
	clientPunches = newDesc("connetd_client_punch_attempts_total",
		"Hole-punching attempts toward a peer.", counterKind, "peer")
	clientPunchPairs = newDesc("connetd_client_punch_pairs_total",
		"(socket, address) pairs probed while punching toward a peer, random ports included.", counterKind, "peer")
	// A separate name: connetd_client_punch_attempts_total already has
	// the peer label, and one name takes one label set.
	clientPunchOutcomes = newDesc("connetd_client_punch_outcomes_total",
		"Finished hole-punching attempts by outcome (direct or failed) and the NAT kinds of this client and the peer.", counterKind, "outcome", "local_nat", "peer_nat")
	clientPathChanges = newDesc("connetd_client_path_changes_total",
		"Paths this client dialed to peers coming up or going down, by reason: direct_up, direct_lost, network_change, relay_up, relay_lost.", counterKind, "reason")
	clientFlowMoves = newDesc("connetd_client_flow_moves_total",
		"Resumable TCP flows that went on over another path, by the path they left and the one they took (direct, relay).", counterKind, "old_path", "new_path")
	clientFlowStall = newDesc("connetd_client_flow_move_stall_max_seconds",
		"The longest stall a flow move caused since start: from leaving the old stream to sending on the new one.", gaugeKind)
	clientTimeToDirect = newDesc("connetd_client_time_to_direct_seconds",
		"Time from wanting a direct path to a peer to having the first one, per peer.", histogramKind)
	clientPortMapping = newDesc("connetd_client_port_mapping",
		"1 for the port-mapping protocol (pcp, nat-pmp, upnp) that maps the direct socket now, else 0.", gaugeKind, "protocol")
	clientPeerRTT = newDesc("connetd_client_peer_rtt_seconds",
		"Smoothed round-trip time of the path an endpoint uses to a peer now.", gaugeKind, "endpoint", "kind", "peer", "path")
	// UDP endpoints only (url = "udp://..."): a TCP endpoint has none of
	// these series.
	clientUDPFlows = newDesc("connetd_client_udp_flows",
		"UDP flows (client addresses) of an endpoint open now.", gaugeKind, "endpoint", "kind")
	clientUDPFlowsRefused = newDesc("connetd_client_udp_flows_refused_total",
		"UDP flows an endpoint refused because it held udp-max-flows; a source counts each datagram of a refused client address.", counterKind, "endpoint", "kind")
	clientUDPDropped = newDesc("connetd_client_udp_datagrams_dropped_total",
		"UDP datagrams of an endpoint dropped, by reason: oversize (larger than the path carries) or other (no path, or a full queue).", counterKind, "endpoint", "kind", "reason")
	clientUDPMaxPayload = newDesc("connetd_client_udp_max_payload_bytes",
		"Largest UDP payload the best path of an endpoint carries now; larger datagrams are dropped.", gaugeKind, "endpoint", "kind")
)

var clientDescs = []*desc{clientControlConnected, clientRelaysConnected, clientEndpointBytes, clientBytes,
	clientActive, clientRefused, clientPeerPath, clientPeers, clientPunches, clientPunchPairs, clientPunchOutcomes, clientPathChanges, clientFlowMoves, clientFlowStall, clientPeerRTT, clientTimeToDirect, clientPortMapping,
	clientUDPFlows, clientUDPFlowsRefused, clientUDPDropped, clientUDPMaxPayload}

func collectClient(s *sink, st *client.Status) {
	gauge(s, clientControlConnected, boolean(st.Control == "connected"))
	relays := 0
	for _, r := range st.Relays {
		if r.Connected {
			relays++
		}
	}
	gauge(s, clientRelaysConnected, float64(relays))
	direct, relayed, waiting := st.PeerCounts()
	gauge(s, clientPeers, float64(direct), "direct")
	gauge(s, clientPeers, float64(relayed), "relay")
	gauge(s, clientPeers, float64(waiting), "none")
	for _, o := range st.PunchOutcomes {
		counter(s, clientPunchOutcomes, o.Count, o.Outcome, o.LocalNAT, o.PeerNAT)
	}
	// Every protocol has a series, so that "no mapping" reads as all
	// zeros rather than as a missing series.
	active, _, _ := strings.Cut(st.PortMapping, " ")
	for _, proto := range portMappingProtocols {
		gauge(s, clientPortMapping, boolean(active == proto), proto)
	}
	for reason, n := range st.PathChanges {
		counter(s, clientPathChanges, n, reason)
	}
	for move, n := range st.FlowMoves.Counts {
		if old, new, ok := strings.Cut(move, "→"); ok {
			counter(s, clientFlowMoves, n, old, new)
		}
	}
	gauge(s, clientFlowStall, float64(st.FlowMoves.MaxStallMS)/1000)
	if h := st.TimeToDirect; h != nil && len(h.Buckets) == len(h.Bounds) {
		histogram(s, clientTimeToDirect, h.Count, h.Sum, h.Bounds, h.Buckets)
	}

	// Punch counts are the peer's, whatever endpoint lists it: once each.
	// Endpoints read the peer at slightly different times, so the largest
	// copy is the latest; taking whichever came last in a map's random
	// order made the counters jump back and forth between scrapes.
	punched := map[string][2]int{}
	for kind, list := range map[string][]client.EndpointStatus{"source": st.Sources, "destination": st.Destinations} {
		for _, e := range list {
			counter(s, clientEndpointBytes, e.BytesIn, e.Name, kind, "in")
			counter(s, clientEndpointBytes, e.BytesOut, e.Name, kind, "out")
			gauge(s, clientActive, float64(e.Active), e.Name, kind)
			gauge(s, clientRefused, boolean(e.Refused != ""), e.Name, kind)
			if u := e.UDP; u != nil {
				gauge(s, clientUDPFlows, float64(u.Flows), e.Name, kind)
				counter(s, clientUDPFlowsRefused, u.FlowsRefused, e.Name, kind)
				counter(s, clientUDPDropped, u.DroppedOversize, e.Name, kind, "oversize")
				counter(s, clientUDPDropped, u.DroppedOther, e.Name, kind, "other")
				if u.MaxPayload > 0 { // no path now
					gauge(s, clientUDPMaxPayload, float64(u.MaxPayload), e.Name, kind)
				}
			}
			for _, p := range e.Peers {
				peer := shortID(p.ID)
				gauge(s, clientPeerPath, 1, e.Name, kind, peer, p.Path)
				if p.RTTMicro > 0 { // no path, or none measured yet
					gauge(s, clientPeerRTT, float64(p.RTTMicro)/1e6, e.Name, kind, peer, p.Path)
				}
				for _, b := range p.ByPath {
					counter(s, clientBytes, b.BytesIn, e.Name, kind, peer, b.Path, "in")
					counter(s, clientBytes, b.BytesOut, e.Name, kind, peer, b.Path, "out")
				}
				got := punched[peer]
				punched[peer] = [2]int{max(got[0], p.PunchAttempts), max(got[1], p.PairsTried)}
			}
		}
	}
	for peer, p := range punched {
		counter(s, clientPunches, int64(p[0]), peer)
		counter(s, clientPunchPairs, int64(p[1]), peer)
	}
}

// portMappingProtocols are the protocols package portmap speaks, as the
// status names them ("pcp 198.51.100.1:19192").
var portMappingProtocols = []string{"pcp", "nat-pmp", "upnp"}

// shortID is the peer ID as logs show it (identity.ID.Short: the first 4
// bytes in hex), taken from the full hex ID of the status.
func shortID(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
