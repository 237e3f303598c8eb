package metrics

import (
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/internal/testenv"
	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/traversal"
)

const peerID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func fullState() State {
	return State{Role: "server", Version: "1.2.3",
		UDPBuffers: map[string]UDPBuffer{"direct": {Receive: 14680064, Send: 425984}},
		Client: &client.Status{Control: "connected", PortMapping: "nat-pmp 198.51.100.1:19192", Relays: []client.RelayStatus{{Connected: true}, {}},
			Sources: []client.EndpointStatus{{Name: "web", BytesIn: 10, BytesOut: 20, Active: 2, Peers: []client.PeerStatus{{
				ID: peerID, Path: "relay", PunchAttempts: 3, PairsTried: 9, RTTMicro: 25000,
				ByPath: []client.PathBytes{{Path: "direct", BytesIn: 1, BytesOut: 2}, {Path: "relay", BytesIn: 9, BytesOut: 18}},
			}}}},
			Destinations: []client.EndpointStatus{{Name: "web", Refused: "over the limit", Peers: []client.PeerStatus{{ID: peerID, Path: "direct", PunchAttempts: 3}}},
				{Name: "dns", Proto: "udp", UDP: &client.UDPStatus{Flows: 3, MaxFlows: 4096, FlowsRefused: 2, DroppedOversize: 5, DroppedOther: 1, MaxPayload: 1180}},
				{Name: "ntp", Proto: "udp", UDP: &client.UDPStatus{MaxFlows: 4096}}},
			PunchOutcomes: []traversal.PunchOutcome{{Outcome: "direct", LocalNAT: "easy", PeerNAT: "hard", Count: 2},
				{Outcome: "failed", LocalNAT: "hard", PeerNAT: "hard", Count: 5}},
			PathChanges:  map[string]int64{"direct_up": 4, "network_change": 1, "relay_lost": 0},
			FlowMoves:    client.FlowMovesStatus{Counts: map[string]int64{"relay→direct": 3, "direct→relay": 1}, MaxStallMS: 870},
			TimeToDirect: &client.Histogram{Bounds: []float64{0.5, 2}, Buckets: []uint64{1, 3}, Count: 4, Sum: 9.25},
		},
		Control: &control.Status{ClientTokens: 3, Refusals: map[string]int64{control.RefusedInvalidToken: 4}, Clients: []control.ClientStatus{
			{TokenIndex: 0, Endpoints: []string{"source:web", "destination:db"}}, {TokenIndex: 2, Endpoints: []string{"source:web"}},
			{TokenIndex: 0}, {TokenIndex: -1, Endpoints: []string{"source:x"}}}},
		Relay: &relay.Status{Clients: []relay.ClientStatus{{}, {}}, Endpoints: []relay.EndpointStatus{{Name: "web", Bytes: 7}}, Packets: 5, Dropped: 3,
			DroppedBy:   map[string]int64{relay.DropUnknownSender: 2, relay.DropUnauthorized: 1, relay.DropUnknownReceiver: 0, relay.DropSendFailed: 0},
			ReadBatches: []int64{1, 0, 2, 0, 0, 0, 0, 0, 0, 1}, ReadDatagrams: 309},
	}
}

// The whole scrape, go_ and process_ included, passes Prometheus's own
// linter and parses with its text parser.
func TestScrapeFollowsConventions(t *testing.T) {
	text := scrapeText(t)
	promtool := testenv.RequireTool(t, "promtool", "prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n%s", err, out, text)
	}
}

func TestScrapeParses(t *testing.T) {
	text := scrapeText(t)
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	if h := mfs["connetd_client_time_to_direct_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 4 || h.GetSampleSum() != 9.25 || len(h.GetBucket()) != 3 {
		t.Errorf("time to direct parsed as %v", h)
	}
	for _, name := range []string{"go_goroutines", "go_info", "go_threads", "go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes",
		"go_memstats_sys_bytes", "go_memstats_next_gc_bytes", "go_memstats_alloc_bytes_total", "go_sched_gomaxprocs_threads",
		"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
		"process_max_fds", "process_start_time_seconds", "connetd_build_info", "connetd_relay_clients", "connetd_control_clients"} {
		if mfs[name] == nil {
			t.Errorf("no %s", name)
		}
	}
}

// scrapeText is one text-format scrape of fullState.
func scrapeText(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	if err := gather(&b, fullState, false, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// families splits a text-format scrape into its families, by name.
func families(text string) map[string]string {
	out := map[string]string{}
	for block := range strings.SplitSeq(strings.TrimSpace(text), "\n# HELP ") {
		block = strings.TrimPrefix(block, "# HELP ")
		name, _, _ := strings.Cut(block, " ")
		out[name] = "# HELP " + block
	}
	return out
}

func TestCollectorValues(t *testing.T) {
	want := `
# HELP connetd_client_bytes_total Bytes carried for an endpoint to or from one peer over one path; in is from the peer.
# TYPE connetd_client_bytes_total counter
connetd_client_bytes_total{direction="in",endpoint="web",kind="source",path="direct",peer="01234567"} 1
connetd_client_bytes_total{direction="in",endpoint="web",kind="source",path="relay",peer="01234567"} 9
connetd_client_bytes_total{direction="out",endpoint="web",kind="source",path="direct",peer="01234567"} 2
connetd_client_bytes_total{direction="out",endpoint="web",kind="source",path="relay",peer="01234567"} 18
# HELP connetd_client_punch_attempts_total Hole-punching attempts toward a peer.
# TYPE connetd_client_punch_attempts_total counter
connetd_client_punch_attempts_total{peer="01234567"} 3
# HELP connetd_client_punch_pairs_total (socket, address) pairs probed while punching toward a peer, random ports included.
# TYPE connetd_client_punch_pairs_total counter
connetd_client_punch_pairs_total{peer="01234567"} 9
# HELP connetd_client_punch_outcomes_total Finished hole-punching attempts by outcome (direct or failed) and the NAT kinds of this client and the peer.
# TYPE connetd_client_punch_outcomes_total counter
connetd_client_punch_outcomes_total{local_nat="easy",outcome="direct",peer_nat="hard"} 2
connetd_client_punch_outcomes_total{local_nat="hard",outcome="failed",peer_nat="hard"} 5
# HELP connetd_client_path_changes_total Paths this client dialed to peers coming up or going down, by reason: direct_up, direct_lost, network_change, relay_up, relay_lost.
# TYPE connetd_client_path_changes_total counter
connetd_client_path_changes_total{reason="direct_up"} 4
connetd_client_path_changes_total{reason="network_change"} 1
connetd_client_path_changes_total{reason="relay_lost"} 0
# HELP connetd_client_flow_moves_total Resumable TCP flows that went on over another path, by the path they left and the one they took (direct, relay).
# TYPE connetd_client_flow_moves_total counter
connetd_client_flow_moves_total{new_path="direct",old_path="relay"} 3
connetd_client_flow_moves_total{new_path="relay",old_path="direct"} 1
# HELP connetd_client_flow_move_stall_max_seconds The longest stall a flow move caused since start: from leaving the old stream to sending on the new one.
# TYPE connetd_client_flow_move_stall_max_seconds gauge
connetd_client_flow_move_stall_max_seconds 0.87
# HELP connetd_client_peer_rtt_seconds Smoothed round-trip time of the path an endpoint uses to a peer now.
# TYPE connetd_client_peer_rtt_seconds gauge
connetd_client_peer_rtt_seconds{endpoint="web",kind="source",path="relay",peer="01234567"} 0.025
# HELP connetd_client_time_to_direct_seconds Time from wanting a direct path to a peer to having the first one, per peer.
# TYPE connetd_client_time_to_direct_seconds histogram
connetd_client_time_to_direct_seconds_bucket{le="0.5"} 1
connetd_client_time_to_direct_seconds_bucket{le="2"} 3
connetd_client_time_to_direct_seconds_bucket{le="+Inf"} 4
connetd_client_time_to_direct_seconds_sum 9.25
connetd_client_time_to_direct_seconds_count 4
# HELP connetd_client_port_mapping 1 for the port-mapping protocol (pcp, nat-pmp, upnp) that maps the direct socket now, else 0.
# TYPE connetd_client_port_mapping gauge
connetd_client_port_mapping{protocol="nat-pmp"} 1
connetd_client_port_mapping{protocol="pcp"} 0
connetd_client_port_mapping{protocol="upnp"} 0
# HELP connetd_udp_buffer_bytes Buffer size the kernel gave a UDP socket of the daemon; direction is receive or send.
# TYPE connetd_udp_buffer_bytes gauge
connetd_udp_buffer_bytes{direction="receive",socket="direct"} 1.4680064e+07
connetd_udp_buffer_bytes{direction="send",socket="direct"} 425984
# HELP connetd_client_control_connected 1 while the client is connected to control, else 0.
# TYPE connetd_client_control_connected gauge
connetd_client_control_connected 1
# HELP connetd_client_endpoint_refused 1 while control refuses the endpoint (e.g. over a limit), else 0.
# TYPE connetd_client_endpoint_refused gauge
connetd_client_endpoint_refused{endpoint="dns",kind="destination"} 0
connetd_client_endpoint_refused{endpoint="ntp",kind="destination"} 0
connetd_client_endpoint_refused{endpoint="web",kind="destination"} 1
connetd_client_endpoint_refused{endpoint="web",kind="source"} 0
# HELP connetd_client_udp_flows UDP flows (client addresses) of an endpoint open now.
# TYPE connetd_client_udp_flows gauge
connetd_client_udp_flows{endpoint="dns",kind="destination"} 3
connetd_client_udp_flows{endpoint="ntp",kind="destination"} 0
# HELP connetd_client_udp_flows_refused_total UDP flows an endpoint refused because it held udp-max-flows; a source counts each datagram of a refused client address.
# TYPE connetd_client_udp_flows_refused_total counter
connetd_client_udp_flows_refused_total{endpoint="dns",kind="destination"} 2
connetd_client_udp_flows_refused_total{endpoint="ntp",kind="destination"} 0
# HELP connetd_client_udp_datagrams_dropped_total UDP datagrams of an endpoint dropped, by reason: oversize (larger than the path carries) or other (no path, or a full queue).
# TYPE connetd_client_udp_datagrams_dropped_total counter
connetd_client_udp_datagrams_dropped_total{endpoint="dns",kind="destination",reason="other"} 1
connetd_client_udp_datagrams_dropped_total{endpoint="dns",kind="destination",reason="oversize"} 5
connetd_client_udp_datagrams_dropped_total{endpoint="ntp",kind="destination",reason="other"} 0
connetd_client_udp_datagrams_dropped_total{endpoint="ntp",kind="destination",reason="oversize"} 0
# HELP connetd_client_udp_max_payload_bytes Largest UDP payload the best path of an endpoint carries now; larger datagrams are dropped.
# TYPE connetd_client_udp_max_payload_bytes gauge
connetd_client_udp_max_payload_bytes{endpoint="dns",kind="destination"} 1180
# HELP connetd_client_peers Distinct peers by the best path any endpoint has to them (direct, relay, none).
# TYPE connetd_client_peers gauge
connetd_client_peers{path="direct"} 1
connetd_client_peers{path="none"} 0
connetd_client_peers{path="relay"} 0
# HELP connetd_control_refusals_total Connections and requests control refused, by reason (a fixed set).
# TYPE connetd_control_refusals_total counter
connetd_control_refusals_total{reason="invalid_token"} 4
# HELP connetd_control_token_clients Clients connected to control with a token, by the token's position among the configured client tokens (from 0).
# TYPE connetd_control_token_clients gauge
connetd_control_token_clients{token_index="0"} 2
connetd_control_token_clients{token_index="1"} 0
connetd_control_token_clients{token_index="2"} 1
# HELP connetd_control_token_endpoints Sources and destinations announced by the clients of a token, by the token's position (from 0).
# TYPE connetd_control_token_endpoints gauge
connetd_control_token_endpoints{token_index="0"} 2
connetd_control_token_endpoints{token_index="1"} 0
connetd_control_token_endpoints{token_index="2"} 1
# HELP connetd_control_clients Clients connected to control.
# TYPE connetd_control_clients gauge
connetd_control_clients 4
# HELP connetd_relay_packets_dropped_total Packets the relay dropped, by reason: unknown_sender, unknown_receiver, unauthorized_pair, send_failed.
# TYPE connetd_relay_packets_dropped_total counter
connetd_relay_packets_dropped_total{reason="send_failed"} 0
connetd_relay_packets_dropped_total{reason="unauthorized_pair"} 1
connetd_relay_packets_dropped_total{reason="unknown_receiver"} 0
connetd_relay_packets_dropped_total{reason="unknown_sender"} 2
# HELP connetd_relay_read_batch_datagrams Datagrams per read of the relay socket.
# TYPE connetd_relay_read_batch_datagrams histogram
connetd_relay_read_batch_datagrams_bucket{le="1"} 1
connetd_relay_read_batch_datagrams_bucket{le="2"} 1
connetd_relay_read_batch_datagrams_bucket{le="4"} 3
connetd_relay_read_batch_datagrams_bucket{le="8"} 3
connetd_relay_read_batch_datagrams_bucket{le="16"} 3
connetd_relay_read_batch_datagrams_bucket{le="32"} 3
connetd_relay_read_batch_datagrams_bucket{le="64"} 3
connetd_relay_read_batch_datagrams_bucket{le="128"} 3
connetd_relay_read_batch_datagrams_bucket{le="256"} 3
connetd_relay_read_batch_datagrams_bucket{le="+Inf"} 4
connetd_relay_read_batch_datagrams_sum 309
connetd_relay_read_batch_datagrams_count 4
# HELP connetd_relay_bytes_total Payload bytes forwarded between an endpoint's sources and destinations, both directions; endpoints beyond the first 100 by name are summed as endpoint="other".
# TYPE connetd_relay_bytes_total counter
connetd_relay_bytes_total{endpoint="web"} 7
`
	s := newSink()
	collect(s, fullState())
	var b strings.Builder
	if err := s.write(&b, false); err != nil {
		t.Fatal(err)
	}
	got, wanted := families(b.String()), families(want)
	for _, name := range []string{"connetd_client_bytes_total", "connetd_client_punch_attempts_total", "connetd_client_punch_pairs_total", "connetd_client_punch_outcomes_total", "connetd_client_path_changes_total", "connetd_client_flow_moves_total", "connetd_client_flow_move_stall_max_seconds", "connetd_client_peer_rtt_seconds", "connetd_client_time_to_direct_seconds", "connetd_client_port_mapping", "connetd_udp_buffer_bytes", "connetd_client_control_connected",
		"connetd_client_endpoint_refused", "connetd_client_udp_flows", "connetd_client_udp_flows_refused_total",
		"connetd_client_udp_datagrams_dropped_total", "connetd_client_udp_max_payload_bytes", "connetd_client_peers", "connetd_control_refusals_total", "connetd_control_token_clients", "connetd_control_token_endpoints", "connetd_control_clients",
		"connetd_relay_packets_dropped_total", "connetd_relay_read_batch_datagrams", "connetd_relay_bytes_total"} {
		if got[name] != wanted[name] {
			t.Errorf("got:\n%s\nwant:\n%s", got[name], wanted[name])
		}
	}
}

func TestRelayEndpointsAreCapped(t *testing.T) {
	var eps []relay.EndpointStatus
	for i := range 150 {
		eps = append(eps, relay.EndpointStatus{Name: fmt.Sprintf("ep%03d", i), Bytes: 1})
	}
	got := relayBytesByEndpoint(eps)
	if len(got) != maxRelayEndpoints+1 || got[otherEndpoint] != 50 || got["ep099"] != 1 || got["ep100"] != 0 {
		t.Fatalf("got %d series, other=%d ep099=%d ep100=%d", len(got), got[otherEndpoint], got["ep099"], got["ep100"])
	}
}

func TestRelayPairsAreCapped(t *testing.T) {
	var pairs []relay.PairStatus
	for i := range 120 {
		pairs = append(pairs, relay.PairStatus{From: fmt.Sprintf("%08x%024x", i, 0), To: fmt.Sprintf("%08x%024x", 1000+i, 0), Bytes: 2})
	}
	got := relayPairs(pairs)
	other := got[[2]string{otherEndpoint, otherEndpoint}]
	if len(got) != maxRelayPairs+1 || other != 40 || got[[2]string{"00000063", "0000044b"}] != 2 {
		t.Fatalf("got %d series, other = %d (want %d and 40: 20 pairs of 2 bytes)", len(got), other, maxRelayPairs+1)
	}
}
