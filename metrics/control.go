package metrics

import (
	"strconv"

	"github.com/connetd/connetd/control"
)

// Control has no per-client labels: a control server may have thousands.
// Per token is as far as it goes: tokens are configured, so they are few,
// and a series is known by the token's index, never by the token.
var (
	controlClients = newDesc("connetd_control_clients",
		"Clients connected to control.", gaugeKind)
	controlEndpoints = newDesc("connetd_control_endpoints",
		"Endpoint names with at least one source or destination announced.", gaugeKind)
	controlRelays = newDesc("connetd_control_relays",
		"Relays linked to control.", gaugeKind)
	controlRefusals = newDesc("connetd_control_refusals_total",
		"Connections and requests control refused, by reason (a fixed set).", counterKind, "reason")
	// Names of their own: connetd_control_clients and _endpoints keep
	// their one unlabelled series, which alerts may compare with a number.
	controlTokenClients = newDesc("connetd_control_token_clients",
		"Clients connected to control with a token, by the token's position among the configured client tokens (from 0).", gaugeKind, "token_index")
	controlTokenEndpoints = newDesc("connetd_control_token_endpoints",
		"Sources and destinations announced by the clients of a token, by the token's position (from 0).", gaugeKind, "token_index")
)

var controlDescs = []*desc{controlClients, controlEndpoints, controlRelays, controlRefusals, controlTokenClients, controlTokenEndpoints}

func collectControl(s *sink, st *control.Status) {
	gauge(s, controlClients, float64(len(st.Clients)))
	gauge(s, controlEndpoints, float64(len(st.Endpoints)))
	gauge(s, controlRelays, float64(len(st.Relays)))
	for reason, n := range st.Refusals {
		counter(s, controlRefusals, n, reason)
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
		gauge(s, controlTokenClients, float64(clients[i]), strconv.Itoa(i))
		gauge(s, controlTokenEndpoints, float64(endpoints[i]), strconv.Itoa(i))
	}
}
