package client_test

import (
	"testing"

	"github.com/connetd/connetd/client"
)

func TestDirectPathIsPunchedAndReportedInStatus(t *testing.T) {
	l := newLab(t)
	svc := echoServer(t)
	l.client("dst", client.Config{PortMapping: true}, func(c *client.Client) {
		must(t, c.AddDestination("svc", client.DestinationConfig{Addr: svc}))
	})
	addr := freeTCP(t)
	src := l.client("src", client.Config{PortMapping: true}, func(c *client.Client) {
		must(t, c.AddSource("svc", client.SourceConfig{Addr: addr}))
	})
	waitPath(t, src, "svc", "direct")
	echo(t, addr, "punched")
	st := src.Status()
	// Loopback-bound sockets: control sees the client's own address (no
	// NAT), nothing is offered besides it, and no router is asked for a
	// mapping.
	if st.NAT != "none" || len(st.Candidates) != 0 || st.PortMapping != "" {
		t.Fatalf("status nat %q candidates %v port mapping %q", st.NAT, st.Candidates, st.PortMapping)
	}
	p := st.Sources[0].Peers[0]
	if p.PunchAttempts < 1 || p.PairsTried < 1 || p.NAT != "none" || p.Path != "direct" || p.RTTMicro <= 0 {
		t.Fatalf("peer status %+v: want a punched direct path with its counters", p)
	}
}
