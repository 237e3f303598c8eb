package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connetd/connetd/control"
)

// Control has no per-client labels: a control server may have thousands.
var (
	controlClients = prometheus.NewDesc("connetd_control_clients",
		"Clients connected to control.", nil, nil)
	controlEndpoints = prometheus.NewDesc("connetd_control_endpoints",
		"Endpoint names with at least one source or destination announced.", nil, nil)
	controlRelays = prometheus.NewDesc("connetd_control_relays",
		"Relays linked to control.", nil, nil)
	controlRefusals = prometheus.NewDesc("connetd_control_refusals_total",
		"Connections and requests control refused, by reason (a fixed set).", []string{"reason"}, nil)
)

var controlDescs = []*prometheus.Desc{controlClients, controlEndpoints, controlRelays, controlRefusals}

func collectControl(ch chan<- prometheus.Metric, st *control.Status) {
	gauge(ch, controlClients, float64(len(st.Clients)))
	gauge(ch, controlEndpoints, float64(len(st.Endpoints)))
	gauge(ch, controlRelays, float64(len(st.Relays)))
	for reason, n := range st.Refusals {
		counter(ch, controlRefusals, n, reason)
	}
}
