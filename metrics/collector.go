package metrics

import (
	"slices"

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

var (
	buildInfo = newDesc("connetd_build_info",
		"Always 1; the labels tell the version and role of this connetd.", gaugeKind, "version", "role")
	udpBuffer = newDesc("connetd_udp_buffer_bytes",
		"Buffer size the kernel gave a UDP socket of the daemon; direction is receive or send.", gaugeKind, "socket", "direction")
)

// connetdDescs are the daemon's own families, for the tests that check
// the docs name only metrics that exist.
func connetdDescs() []*desc {
	return slices.Concat([]*desc{buildInfo, udpBuffer}, clientDescs, controlDescs, relayDescs)
}

// collect adds the series of one State: the parts its role has.
func collect(s *sink, st State) {
	gauge(s, buildInfo, 1, st.Version, st.Role)
	for socket, b := range st.UDPBuffers {
		gauge(s, udpBuffer, float64(b.Receive), socket, "receive")
		gauge(s, udpBuffer, float64(b.Send), socket, "send")
	}
	if st.Client != nil {
		collectClient(s, st.Client)
	}
	if st.Control != nil {
		collectControl(s, st.Control)
	}
	if st.Relay != nil {
		collectRelay(s, st.Relay)
	}
}

func boolean(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
