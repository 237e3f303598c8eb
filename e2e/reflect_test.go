package e2e

import (
	"net"
	"testing"
	"time"

	"github.com/connetd/connetd/wire"
)

// A reflect request is answered only when it is as long as its answer, and
// at most at a limited rate per source: a forged source address turns
// control or a relay into neither an amplifier nor a flood toward anyone.
func TestReflectNeitherAmplifiesNorFloods(t *testing.T) {
	tp := newTopology(t)
	tp.startServer(t)
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	padded := wire.AppendReflect(nil, wire.Reflect{TxID: [wire.ReflectTxIDLen]byte{1, 2, 3}})
	short := padded[:4+wire.ReflectTxIDLen] // the request as it was before padding
	buf := make([]byte, 1500)
	replies := func(wait time.Duration) (n int, longest int) {
		_ = u.SetReadDeadline(time.Now().Add(wait))
		for {
			m, err := u.Read(buf)
			if err != nil {
				return n, longest
			}
			n, longest = n+1, max(longest, m)
		}
	}
	for _, port := range []int{tp.serverPort, tp.relayPort} {
		to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
		if _, err := u.WriteToUDP(short, to); err != nil {
			t.Fatal(err)
		}
		if n, _ := replies(300 * time.Millisecond); n != 0 {
			t.Fatalf("port %d answered a %d-byte request, shorter than its answer", port, len(short))
		}
		if _, err := u.WriteToUDP(padded, to); err != nil {
			t.Fatal(err)
		}
		if n, longest := replies(time.Second); n != 1 || longest > len(padded) {
			t.Fatalf("port %d: %d answers to one padded request, the longest %d bytes (request %d)", port, n, longest, len(padded))
		}
		// 500 requests at once from one address: the burst and a little
		// refill are answered, not all of them.
		start := time.Now()
		for range 500 {
			if _, err := u.WriteToUDP(padded, to); err != nil {
				t.Fatal(err)
			}
		}
		n, _ := replies(time.Second)
		if limit := 40 + int(20*time.Since(start).Seconds()) + 1; n > limit {
			t.Fatalf("port %d answered %d of 500 requests from one address, want at most %d", port, n, limit)
		}
		if n == 0 {
			t.Fatalf("port %d answered none of 500 requests: the limit refuses a source's first burst", port)
		}
	}
}
