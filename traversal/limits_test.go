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
	// Four spraying attempts toward one peer share its budget; then 36
	// more toward three other peers fill the client's.
	var peers [4]identity.ID
	for i := range peers {
		p, _ := identity.New("peer")
		peers[i] = p.ID
	}
	punch := func(i int, peer identity.ID) {
		trav.OnPunch(&wire.Punch{Nonce: []byte{byte(i), 1, 2, 3, 4, 5, 6, 7}, Peer: peer,
			Direct: []string{"127.0.0.1:9"}, NAT: wire.NATHard, Mode: wire.PunchModeSpray})
	}
	for i := range 4 {
		punch(i, peers[0])
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		trav.mu.Lock()
		n := len(trav.sessions)
		trav.mu.Unlock()
		if n == 4 {
			break
		}
	}
	trav.mu.Lock()
	first, firstPeer := trav.spraying, trav.sprayFor[peers[0]]
	trav.mu.Unlock()
	if first != maxSpraySocketsPerPeer || firstPeer != maxSpraySocketsPerPeer {
		t.Fatalf("four attempts toward one peer hold %d spray sockets (%d for it), want its budget %d",
			first, firstPeer, maxSpraySocketsPerPeer)
	}
	for i := 4; i < 40; i++ {
		punch(i, peers[1+i%3])
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
	if spraying != maxSpraySockets {
		t.Fatalf("%d spray sockets open, want the budget %d filled", spraying, maxSpraySockets)
	}
	for id, n := range perPeer {
		if n > maxSpraySocketsPerPeer {
			t.Fatalf("%d spray sockets open toward peer %s, budget %d", n, id.Short(), maxSpraySocketsPerPeer)
		}
	}
}
