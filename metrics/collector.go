package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/relay"
)

// State is what a scrape reads: the parts the role has are set, as in
// daemon.Snapshot (both Control and Relay for a server).
type State struct {
	Role, Version string
	Client        *client.Status
	Control       *control.Status
	Relay         *relay.Status
	// UDPBuffers are the sizes the kernel gave the daemon's UDP sockets,
	// by socket name (direct, control, relays, relay): a few at most.
	UDPBuffers map[string]UDPBuffer
}

// UDPBuffer is one socket's buffer sizes in bytes, as the kernel reports
// them (Linux doubles what was asked, for its bookkeeping).
type UDPBuffer struct{ Receive, Send int }

// collector turns one State into metrics at each scrape.
type collector struct {
	state func() State
}

var (
	buildInfo = prometheus.NewDesc("connetd_build_info",
		"Always 1; the labels tell the version and role of this connetd.", []string{"version", "role"}, nil)
	udpBuffer = prometheus.NewDesc("connetd_udp_buffer_bytes",
		"Buffer size the kernel gave a UDP socket of the daemon; direction is receive or send.", []string{"socket", "direction"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- buildInfo
	ch <- udpBuffer
	for _, list := range [][]*prometheus.Desc{clientDescs, controlDescs, relayDescs} {
		for _, d := range list {
			ch <- d
		}
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.state()
	ch <- prometheus.MustNewConstMetric(buildInfo, prometheus.GaugeValue, 1, st.Version, st.Role)
	for socket, b := range st.UDPBuffers {
		gauge(ch, udpBuffer, float64(b.Receive), socket, "receive")
		gauge(ch, udpBuffer, float64(b.Send), socket, "send")
	}
	if st.Client != nil {
		collectClient(ch, st.Client)
	}
	if st.Control != nil {
		collectControl(ch, st.Control)
	}
	if st.Relay != nil {
		collectRelay(ch, st.Relay)
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v int64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func boolean(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
