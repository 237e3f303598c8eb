package relay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

// bigName is the i-th of many endpoint names of 255 bytes, the longest
// control accepts: 12,000 of them make a table of over 4 MiB, more than
// one control message may carry.
func bigName(i int) string {
	s := fmt.Sprintf("big-%06d-", i)
	return s + strings.Repeat("x", 255-len(s))
}

// A table larger than a message reaches the relay in pieces over a link
// that stays up, and a pair registered afterwards is still authorized:
// one client announcing thousands of names must not lock every newcomer
// out of the relay.
func TestRelayLinkCarriesATableLargerThanAMessage(t *testing.T) {
	// Control's default limits let a client announce 256 names, so it
	// takes many clients to make such a table, as in a big deployment
	// (before the limits, one client could make it alone). The test
	// raises the limit so that 8 pairs of clients do, which spares it
	// dozens of handshakes; to the relay link it is all the same.
	const n, perClient = 12000, 1500
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := startLinked(t, ctx, control.Limits{EndpointsPerClient: perClient}, nil)

	start := time.Now()
	for first := 0; first < n; first += perClient {
		src, dst := newRelayClient(t), newRelayClient(t)
		ss, ds := l.join(t, ctx, src.id), l.join(t, ctx, dst.id)
		for i := first; i < min(first+perClient, n); i++ {
			ss.send(t, &wire.Announce{Endpoint: bigName(i), Role: restrict.RoleSource, Route: wire.RouteRelay})
			ds.send(t, &wire.Announce{Endpoint: bigName(i), Role: restrict.RoleDestination, Route: wire.RouteRelay})
		}
	}
	l.waitRelay(t, ctx, fmt.Sprintf("held all %d endpoints", n), func(m map[string]int) bool { return len(m) == n })
	t.Logf("%d endpoints of 255-byte names reached the relay in %v", n, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	a, b := newRelayClient(t), newRelayClient(t)
	as, bs := l.join(t, ctx, a.id), l.join(t, ctx, b.id)
	as.send(t, &wire.Announce{Endpoint: "fresh", Role: restrict.RoleSource, Route: wire.RouteRelay})
	bs.send(t, &wire.Announce{Endpoint: "fresh", Role: restrict.RoleDestination, Route: wire.RouteRelay})
	l.waitRelay(t, ctx, "authorized the new pair", func(m map[string]int) bool { return m["fresh"] == 1 && len(m) == n+1 })
	t.Logf("the next pair reached the relay in %v", time.Since(start).Round(time.Millisecond))
	a.link(t, ctx, l.relayID, l.relayAddr)
	b.link(t, ctx, l.relayID, l.relayAddr)
	pairFlows(t, ctx, l, a, b, readRaw(t, ctx, b))
	if n := l.dials.Load(); n != 1 {
		t.Fatalf("the relay dialed control %d times, want once", n)
	}
}
