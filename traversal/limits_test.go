package traversal

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// readyCounter is a control session that counts the punch_ready messages
// the client sends: one per attempt it took part in.
type readyCounter struct {
	mu    sync.Mutex
	ready int
}

func (r *readyCounter) Send(m wire.Message) bool {
	if _, ok := m.(*wire.PunchReady); ok {
		r.mu.Lock()
		r.ready++
		r.mu.Unlock()
	}
	return true
}

func (r *readyCounter) WaitUp(context.Context) bool { return true }

// A control that sends more punch messages than it may (16 waiting per
// client) does not make the client run more attempts, or open more
// sockets, than that.
func TestAttemptsBeyondTheLimitAreIgnored(t *testing.T) {
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: u}
	defer tr.Close()
	ctl := &readyCounter{}
	self, _ := identity.New("self")
	trav := New(Config{Transport: tr, Conn: u, Self: self.ID, Control: ctl})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = trav.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for !trav.spawn(func(context.Context) {}) { // until Run runs
		time.Sleep(time.Millisecond)
	}
	// 40 spraying attempts: half toward one peer, half toward three others.
	var peers [4]identity.ID
	for i := range peers {
		p, _ := identity.New("peer")
		peers[i] = p.ID
	}
	for i := range 40 {
		peer := peers[0]
		if i%2 == 1 {
			peer = peers[1+i%3]
		}
		trav.OnPunch(&wire.Punch{Nonce: []byte{byte(i), 1, 2, 3, 4, 5, 6, 7}, Peer: peer,
			Direct: []string{"127.0.0.1:9"}, NAT: wire.NATHard, Mode: wire.PunchModeSpray})
	}
	time.Sleep(time.Second) // attempts wait up to 4 s for punch_go: all 40 are due by now
	ctl.mu.Lock()
	ready := ctl.ready
	ctl.mu.Unlock()
	trav.mu.Lock()
	spraying := trav.spraying
	perPeer := map[identity.ID]int{}
	for id, n := range trav.sprayFor {
		perPeer[id] = n
	}
	trav.mu.Unlock()
	if ready != maxAttempts {
		t.Fatalf("40 punch messages made %d attempts, want %d", ready, maxAttempts)
	}
	if spraying > maxSpraySockets || spraying < maxSpraySocketsPerPeer {
		t.Fatalf("%d spray sockets open, budget %d (and room for %d)", spraying, maxSpraySockets, maxSpraySocketsPerPeer)
	}
	for id, n := range perPeer {
		if n > maxSpraySocketsPerPeer {
			t.Fatalf("%d spray sockets open toward peer %s, budget %d", n, id.Short(), maxSpraySocketsPerPeer)
		}
	}
	if perPeer[peers[0]] != maxSpraySocketsPerPeer {
		t.Fatalf("%d spray sockets toward the peer of 20 attempts, want its budget %d", perPeer[peers[0]], maxSpraySocketsPerPeer)
	}
}
