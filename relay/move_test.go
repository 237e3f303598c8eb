package relay_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/wire"
)

// rebinder is a NAT in front of one client: the client sends to front,
// the rebinder sends on to the relay from its current outside socket and
// passes replies back. rebind swaps in a new outside socket (a new port)
// and closes the old one, as a NAT that lost its mapping does.
type rebinder struct {
	front  *net.UDPConn
	relay  netip.AddrPort
	client atomic.Pointer[netip.AddrPort]
	out    atomic.Pointer[net.UDPConn]
	wg     sync.WaitGroup
}

func newRebinder(t *testing.T, relay netip.AddrPort) *rebinder {
	t.Helper()
	r := &rebinder{front: udp(t), relay: relay}
	r.rebind(t)
	r.wg.Go(func() {
		b := make([]byte, 2048)
		for {
			n, from, err := r.front.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			r.client.Store(&from)
			_, _ = r.out.Load().WriteToUDPAddrPort(b[:n], r.relay)
		}
	})
	t.Cleanup(func() { r.front.Close(); r.out.Load().Close(); r.wg.Wait() })
	return r
}

func (r *rebinder) rebind(t *testing.T) {
	t.Helper()
	out, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if old := r.out.Swap(out); old != nil {
		old.Close()
	}
	r.wg.Go(func() {
		b := make([]byte, 2048)
		for {
			n, err := out.Read(b)
			if err != nil {
				return
			}
			if c := r.client.Load(); c != nil {
				_, _ = r.front.WriteToUDPAddrPort(b[:n], *c)
			}
		}
	})
}

// A client whose address changes (its NAT rebinds) keeps its frames going
// through: the relay follows its connection to the new address as soon as
// quic-go has validated it, not at the next poll. The client speaks on its
// link right after moving (the relay cannot learn a new address before the
// client sends a QUIC packet from there); what is measured is the relay's
// part, the longest silence at the receiver.
func TestRelayFollowsAMovedClientAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ru := udp(t)
	relayID, _ := identity.New("relay")
	srv := startRelay(t, relay.Config{Identity: relayID, Conn: ru})
	relayAddr := ru.LocalAddr().(*net.UDPAddr).AddrPort()
	nat := newRebinder(t, relayAddr)
	viaNAT := nat.front.LocalAddr().(*net.UDPAddr).AddrPort()

	a, b := newRelayClient(t), newRelayClient(t)
	srv.SetAuth(&wire.RelayAuth{Endpoints: []wire.RelayEndpoint{
		{Endpoint: "e", Sources: []identity.ID{a.id.ID}, Destinations: []identity.ID{b.id.ID}},
	}})
	a.link(t, ctx, relayID, viaNAT)
	b.link(t, ctx, relayID, relayAddr)
	atB := readRaw(t, ctx, b)

	// a sends a numbered frame every millisecond until the test is done.
	stop := make(chan struct{})
	var sender sync.WaitGroup
	defer func() { close(stop); sender.Wait() }()
	sender.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for seq := uint32(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_, _ = a.conn.WriteTo(rawPayload(seq), a.conn.PeerAddr(viaNAT, b.id.ID))
		}
	})

	// The longest silence at b, over a stretch of flowing frames.
	longestGap := func(d time.Duration) time.Duration {
		t.Helper()
		last := time.Now() // silence from the start counts
		var gap time.Duration
		end := time.After(d)
		for {
			select {
			case got := <-atB:
				if got.at.Sub(last) > gap {
					gap = got.at.Sub(last)
				}
				last = got.at
			case <-end:
				if time.Since(last) > gap {
					gap = time.Since(last)
				}
				return gap
			}
		}
	}
	// The bounds leave room for a machine loaded by other tests (-race,
	// packages in parallel): a frame every millisecond may wait for the
	// scheduler now and then, but not for a poll.
	if gap := longestGap(200 * time.Millisecond); gap > 100*time.Millisecond {
		t.Fatalf("frames stall before any move (%v)", gap)
	}
	// Four moves: a poll every 500 ms would pass each by luck at most 40%
	// of the time, all four less than 3% of the time.
	const bound = 200 * time.Millisecond
	for i := range 4 {
		nat.rebind(t)
		st, err := a.qc.OpenUniStream() // speak on the link from the new address
		if err == nil {
			_, _ = st.Write([]byte{1})
			_ = st.Close()
		}
		gap := longestGap(400 * time.Millisecond)
		t.Logf("move %d: longest silence %v", i+1, gap)
		if gap > bound {
			t.Fatalf("move %d: frames stopped for %v (bound %v)", i+1, gap, bound)
		}
	}
	moved := nat.out.Load().LocalAddr().(*net.UDPAddr).AddrPort()
	for _, c := range srv.Status().Clients {
		if c.ID == a.id.ID.String() && c.Addr != moved.String() {
			t.Fatalf("status shows a at %s, want %s", c.Addr, moved)
		}
	}
}
