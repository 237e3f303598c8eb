// Package testport picks loopback ports for the daemons a test starts.
// A port the kernel hands out for ":0" comes from the ephemeral range,
// where any outgoing connection of any test may take it between the pick
// and the daemon's bind (a test holding 10,000 connections open makes that
// likely). Ports here come from below that range, where only explicit
// binds go, and are checked free for TCP and UDP.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// Below the Linux default ephemeral range (32768–60999).
const lowest, highest = 10000, 32000

// given are the ports this process handed out: a test asks for several
// before its daemons bind any, so a port that is free twice in a row must
// not be given twice.
var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Free returns a port of 127.0.0.1 that is free for both TCP and UDP now,
// and that this process has not handed out before.
func Free(t testing.TB) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		port := lowest + rand.IntN(highest-lowest)
		if given[port] {
			continue
		}
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		given[port] = true
		return port
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// Addr is Free as "127.0.0.1:port".
func Addr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", Free(t))
}
