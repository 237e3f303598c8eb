package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connetd/connetd/client"
)

// Client labels: endpoint and kind (source or destination) come from the
// configuration; peer is the short ID of a peer serving an endpoint now;
// path and direction take two values each. A departed peer's series end.
var (
	clientControlConnected = prometheus.NewDesc("connetd_client_control_connected",
		"1 while the client is connected to control, else 0.", nil, nil)
	clientRelaysConnected = prometheus.NewDesc("connetd_client_relays_connected",
		"Relays the client is connected to.", nil, nil)
	clientEndpointBytes = prometheus.NewDesc("connetd_client_endpoint_bytes_total",
		"Bytes carried for an endpoint, all peers and paths; in is from peers.", []string{"endpoint", "kind", "direction"}, nil)
	clientBytes = prometheus.NewDesc("connetd_client_bytes_total",
		"Bytes carried for an endpoint to or from one peer over one path; in is from the peer.",
		[]string{"endpoint", "kind", "peer", "path", "direction"}, nil)
	clientActive = prometheus.NewDesc("connetd_client_active_connections",
		"TCP connections (or UDP flows) of an endpoint being carried now.", []string{"endpoint", "kind"}, nil)
	clientRefused = prometheus.NewDesc("connetd_client_endpoint_refused",
		"1 while control refuses the endpoint (e.g. over a limit), else 0.", []string{"endpoint", "kind"}, nil)
	clientPeerPath = prometheus.NewDesc("connetd_client_peer_path",
		"1 for the path an endpoint uses to a peer now: direct, relay or none.", []string{"endpoint", "kind", "peer", "path"}, nil)
	clientPeers = prometheus.NewDesc("connetd_client_peers",
		"Distinct peers by the best path any endpoint has to them (direct, relay, none).", []string{"path"}, nil)
	clientPunches = prometheus.NewDesc("connetd_client_punch_attempts_total",
		"Hole-punching attempts toward a peer.", []string{"peer"}, nil)
	clientPunchPairs = prometheus.NewDesc("connetd_client_punch_pairs_total",
		"(socket, address) pairs probed while punching toward a peer, random ports included.", []string{"peer"}, nil)
	// A separate name: connetd_client_punch_attempts_total already has
	// the peer label, and one name takes one label set.
	clientPunchOutcomes = prometheus.NewDesc("connetd_client_punch_outcomes_total",
		"Finished hole-punching attempts by outcome (direct or failed) and the NAT kinds of this client and the peer.",
		[]string{"outcome", "local_nat", "peer_nat"}, nil)
	clientPathChanges = prometheus.NewDesc("connetd_client_path_changes_total",
		"Paths this client dialed to peers coming up or going down, by reason: direct_up, direct_lost, network_change, relay_up, relay_lost.",
		[]string{"reason"}, nil)
	clientTimeToDirect = prometheus.NewDesc("connetd_client_time_to_direct_seconds",
		"Time from wanting a direct path to a peer to having the first one, per peer.", nil, nil)
	clientPortMapping = prometheus.NewDesc("connetd_client_port_mapping",
		"1 for the port-mapping protocol (pcp, nat-pmp, upnp) that maps the direct socket now, else 0.", []string{"protocol"}, nil)
	clientPeerRTT = prometheus.NewDesc("connetd_client_peer_rtt_seconds",
		"Smoothed round-trip time of the path an endpoint uses to a peer now.", []string{"endpoint", "kind", "peer", "path"}, nil)
	// UDP endpoints only (url = "udp://..."): a TCP endpoint has none of
	// these series.
	clientUDPFlows = prometheus.NewDesc("connetd_client_udp_flows",
		"UDP flows (client addresses) of an endpoint open now.", []string{"endpoint", "kind"}, nil)
	clientUDPFlowsRefused = prometheus.NewDesc("connetd_client_udp_flows_refused_total",
		"UDP flows an endpoint refused because it held udp-max-flows; a source counts each datagram of a refused client address.",
		[]string{"endpoint", "kind"}, nil)
	clientUDPDropped = prometheus.NewDesc("connetd_client_udp_datagrams_dropped_total",
		"UDP datagrams of an endpoint dropped, by reason: oversize (larger than the path carries) or other (no path, or a full queue).",
		[]string{"endpoint", "kind", "reason"}, nil)
	clientUDPMaxPayload = prometheus.NewDesc("connetd_client_udp_max_payload_bytes",
		"Largest UDP payload the best path of an endpoint carries now; larger datagrams are dropped.", []string{"endpoint", "kind"}, nil)
)

var clientDescs = []*prometheus.Desc{clientControlConnected, clientRelaysConnected, clientEndpointBytes, clientBytes,
	clientActive, clientRefused, clientPeerPath, clientPeers, clientPunches, clientPunchPairs, clientPunchOutcomes, clientPathChanges, clientPeerRTT, clientTimeToDirect, clientPortMapping,
	clientUDPFlows, clientUDPFlowsRefused, clientUDPDropped, clientUDPMaxPayload}

func collectClient(ch chan<- prometheus.Metric, st *client.Status) {
	gauge(ch, clientControlConnected, boolean(st.Control == "connected"))
	relays := 0
	for _, r := range st.Relays {
		if r.Connected {
			relays++
		}
	}
	gauge(ch, clientRelaysConnected, float64(relays))
	direct, relayed, waiting := st.PeerCounts()
	gauge(ch, clientPeers, float64(direct), "direct")
	gauge(ch, clientPeers, float64(relayed), "relay")
	gauge(ch, clientPeers, float64(waiting), "none")
	for _, o := range st.PunchOutcomes {
		counter(ch, clientPunchOutcomes, o.Count, o.Outcome, o.LocalNAT, o.PeerNAT)
	}
	// Every protocol has a series, so that "no mapping" reads as all
	// zeros rather than as a missing series.
	active, _, _ := strings.Cut(st.PortMapping, " ")
	for _, proto := range portMappingProtocols {
		gauge(ch, clientPortMapping, boolean(active == proto), proto)
	}
	for reason, n := range st.PathChanges {
		counter(ch, clientPathChanges, n, reason)
	}
	if h := st.TimeToDirect; h != nil && len(h.Buckets) == len(h.Bounds) {
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, le := range h.Bounds {
			buckets[le] = h.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(clientTimeToDirect, h.Count, h.Sum, buckets)
	}

	// Punch counts are the peer's, whatever endpoint lists it: once each.
	punched := map[string]client.PeerStatus{}
	for kind, list := range map[string][]client.EndpointStatus{"source": st.Sources, "destination": st.Destinations} {
		for _, e := range list {
			counter(ch, clientEndpointBytes, e.BytesIn, e.Name, kind, "in")
			counter(ch, clientEndpointBytes, e.BytesOut, e.Name, kind, "out")
			gauge(ch, clientActive, float64(e.Active), e.Name, kind)
			gauge(ch, clientRefused, boolean(e.Refused != ""), e.Name, kind)
			if u := e.UDP; u != nil {
				gauge(ch, clientUDPFlows, float64(u.Flows), e.Name, kind)
				counter(ch, clientUDPFlowsRefused, u.FlowsRefused, e.Name, kind)
				counter(ch, clientUDPDropped, u.DroppedOversize, e.Name, kind, "oversize")
				counter(ch, clientUDPDropped, u.DroppedOther, e.Name, kind, "other")
				if u.MaxPayload > 0 { // no path now
					gauge(ch, clientUDPMaxPayload, float64(u.MaxPayload), e.Name, kind)
				}
			}
			for _, p := range e.Peers {
				peer := shortID(p.ID)
				gauge(ch, clientPeerPath, 1, e.Name, kind, peer, p.Path)
				if p.RTTMicro > 0 { // no path, or none measured yet
					gauge(ch, clientPeerRTT, float64(p.RTTMicro)/1e6, e.Name, kind, peer, p.Path)
				}
				for _, b := range p.ByPath {
					counter(ch, clientBytes, b.BytesIn, e.Name, kind, peer, b.Path, "in")
					counter(ch, clientBytes, b.BytesOut, e.Name, kind, peer, b.Path, "out")
				}
				punched[peer] = p
			}
		}
	}
	for peer, p := range punched {
		counter(ch, clientPunches, int64(p.PunchAttempts), peer)
		counter(ch, clientPunchPairs, int64(p.PairsTried), peer)
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
