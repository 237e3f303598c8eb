package udptest

import (
	"net"
	"strings"
	"testing"
)

// lossyEcho echoes datagrams on loopback but drops every dropEvery-th.
func lossyEcho(t *testing.T, dropEvery int) string {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for i := 1; ; i++ {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if i%dropEvery != 0 {
				_, _ = pc.WriteToUDP(buf[:n], from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

func TestExchangeLossyCountsLossesAndRefusesTooMany(t *testing.T) {
	addr := lossyEcho(t, 100)
	if err := ExchangeLossy(Dial(t, addr), 500, 200, 8, "ok", 10); err != nil {
		t.Fatalf("5 of 500 lost, 10 allowed: %v", err)
	}
	err := ExchangeLossy(Dial(t, addr), 500, 200, 8, "few", 2)
	if err == nil || !strings.Contains(err.Error(), "lost before") {
		t.Fatalf("5 of 500 lost, 2 allowed: got %v, want an error", err)
	}
	if err := Exchange(Dial(t, lossyEcho(t, 1000000)), 200, 200, 8, "all"); err != nil {
		t.Fatalf("nothing lost: %v", err)
	}
}
