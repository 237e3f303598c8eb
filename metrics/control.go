package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connetd/connetd/control"
)

// Control has no per-client labels: a control server may have thousands.
// Per token is as far as it goes: tokens are configured, so they are few,
// and a series is known by the token's index, never by the token.
var (
	controlClients = prometheus.NewDesc("connetd_control_clients",
		"Clients connected to control.", nil, nil)
	controlEndpoints = prometheus.NewDesc("connetd_control_endpoints",
		"Endpoint names with at least one source or destination announced.", nil, nil)
	controlRelays = prometheus.NewDesc("connetd_control_relays",
		"Relays linked to control.", nil, nil)
	controlRefusals = prometheus.NewDesc("connetd_control_refusals_total",
		"Connections and requests control refused, by reason (a fixed set).", []string{"reason"}, nil)
	// Names of their own: connetd_control_clients and _endpoints keep
	// their one unlabelled series, which alerts may compare with a number.
	controlTokenClients = prometheus.NewDesc("connetd_control_token_clients",
		"Clients connected to control with a token, by the token's position among the configured client tokens (from 0).", []string{"token_index"}, nil)
	controlTokenEndpoints = prometheus.NewDesc("connetd_control_token_endpoints",
		"Sources and destinations announced by the clients of a token, by the token's position (from 0).", []string{"token_index"}, nil)
)

var controlDescs = []*prometheus.Desc{controlClients, controlEndpoints, controlRelays, controlRefusals, controlTokenClients, controlTokenEndpoints}

func collectControl(ch chan<- prometheus.Metric, st *control.Status) {
	gauge(ch, controlClients, float64(len(st.Clients)))
	gauge(ch, controlEndpoints, float64(len(st.Endpoints)))
	gauge(ch, controlRelays, float64(len(st.Relays)))
	for reason, n := range st.Refusals {
		counter(ch, controlRefusals, n, reason)
	}
	// Every configured token has a series, zero without clients; a client
	// whose token a reload just revoked (index -1) is on its way out.
	clients, endpoints := make([]int, st.ClientTokens), make([]int, st.ClientTokens)
	for _, c := range st.Clients {
		if c.TokenIndex >= 0 && c.TokenIndex < st.ClientTokens {
			clients[c.TokenIndex]++
			endpoints[c.TokenIndex] += len(c.Endpoints)
		}
	}
	for i := range st.ClientTokens {
		gauge(ch, controlTokenClients, float64(clients[i]), strconv.Itoa(i))
		gauge(ch, controlTokenEndpoints, float64(endpoints[i]), strconv.Itoa(i))
	}
}
