package metrics

import (
	"slices"
	"strings"

	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/relayconn"
)

// maxRelayEndpoints bounds the endpoint label of the relay's byte counter:
// the first ones by name get a series each, the rest are summed as
// endpoint="other". Names sort the same at each scrape, so an endpoint
// keeps its series while the set of endpoints stays the same.
const maxRelayEndpoints = 100

// otherEndpoint is the endpoint label of the bytes beyond the first 100.
const otherEndpoint = "other"

var (
	relayClients = newDesc("connetd_relay_clients",
		"Clients connected to the relay.", gaugeKind)
	relayEndpoints = newDesc("connetd_relay_endpoints",
		"Endpoints the relay is authorized to forward.", gaugeKind)
	relayBytes = newDesc("connetd_relay_bytes_total",
		"Payload bytes forwarded between an endpoint's sources and destinations, both directions; "+
			"endpoints beyond the first 100 by name are summed as endpoint=\"other\".", counterKind, "endpoint")
	relayPackets = newDesc("connetd_relay_packets_forwarded_total",
		"Packets the relay forwarded.", counterKind)
	relayDropped = newDesc("connetd_relay_packets_dropped_total",
		"Packets the relay dropped, by reason: unknown_sender, unknown_receiver, unauthorized_pair, send_failed.", counterKind, "reason")
)

// relayReadBatch is how full the relay socket's reads are: datagrams per
// recvmmsg (GRO-joined ones counted singly). Fuller reads cost less CPU
// per byte.
var relayReadBatch = newDesc("connetd_relay_read_batch_datagrams",
	"Datagrams per read of the relay socket.", histogramKind)

var relayDescs = []*desc{relayClients, relayEndpoints, relayBytes, relayPairBytes, relayPackets, relayDropped, relayReadBatch}

func collectRelay(s *sink, st *relay.Status) {
	gauge(s, relayClients, float64(len(st.Clients)))
	gauge(s, relayEndpoints, float64(len(st.Endpoints)))
	counter(s, relayPackets, st.Packets)
	for reason, n := range st.DroppedBy {
		counter(s, relayDropped, n, reason)
	}
	for name, n := range relayBytesByEndpoint(st.Endpoints) {
		counter(s, relayBytes, n, name)
	}
	for k, n := range relayPairs(st.Pairs) {
		counter(s, relayPairBytes, n, k[0], k[1])
	}
	if len(st.ReadBatches) == len(relayconn.BatchBuckets)+1 {
		bounds := make([]float64, len(relayconn.BatchBuckets))
		cumulative := make([]uint64, len(relayconn.BatchBuckets))
		var cum uint64
		for i, bound := range relayconn.BatchBuckets {
			cum += uint64(st.ReadBatches[i])
			bounds[i], cumulative[i] = float64(bound), cum
		}
		cum += uint64(st.ReadBatches[len(relayconn.BatchBuckets)])
		histogram(s, relayReadBatch, cum, float64(st.ReadDatagrams), bounds, cumulative)
	}
}

// relayBytesByEndpoint caps the endpoints at maxRelayEndpoints, by name.
// A real endpoint called "other" shares the series of the rest.
func relayBytesByEndpoint(eps []relay.EndpointStatus) map[string]int64 {
	names := make([]string, 0, len(eps))
	bytes := map[string]int64{}
	for _, e := range eps {
		names = append(names, e.Name)
		bytes[e.Name] += e.Bytes
	}
	slices.Sort(names)
	names = slices.Compact(names)
	out := map[string]int64{}
	for i, name := range names {
		if i >= maxRelayEndpoints {
			name = otherEndpoint
		}
		out[name] += bytes[names[i]]
	}
	return out
}

// maxRelayPairs bounds the (from, to) labels of the relay's per-pair byte
// counter: the first pairs by ID get a series each, the rest are summed as
// from="other", to="other".
const maxRelayPairs = 100

var relayPairBytes = newDesc("connetd_relay_pair_bytes_total",
	"Payload bytes forwarded from one client to another (short IDs); pairs beyond the first 100 by ID are summed as from=\"other\", to=\"other\".", counterKind, "from", "to")

// relayPairs caps the pairs at maxRelayPairs, sorted by full IDs so a
// pair keeps its series while the set of pairs stays the same.
func relayPairs(pairs []relay.PairStatus) map[[2]string]int64 {
	sorted := slices.SortedFunc(slices.Values(pairs), func(a, b relay.PairStatus) int {
		if c := strings.Compare(a.From, b.From); c != 0 {
			return c
		}
		return strings.Compare(a.To, b.To)
	})
	out := map[[2]string]int64{}
	for i, p := range sorted {
		k := [2]string{shortID(p.From), shortID(p.To)}
		if i >= maxRelayPairs {
			k = [2]string{otherEndpoint, otherEndpoint}
		}
		out[k] += p.Bytes
	}
	return out
}
