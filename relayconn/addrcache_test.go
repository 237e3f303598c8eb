package relayconn

import (
	"net"
	"testing"
)

// Packets of one sender in a row share one address (no garbage per packet);
// another sender gets its own, and the first one's address is unchanged.
func TestConsecutivePacketsShareAddress(t *testing.T) {
	r := newRig(t)
	p := []byte{0x41, 1, 2, 3, 4, 5, 6, 7, 8}
	r.send(t, r.stranger, p)
	_, a1 := r.read(t)
	r.send(t, r.stranger, p)
	_, a2 := r.read(t)
	if a1 != a2 {
		t.Errorf("two packets of one sender: addresses %p and %p, want one", a1, a2)
	}
	r.send(t, r.relay, p)
	_, b := r.read(t)
	if b.(*net.UDPAddr).AddrPort() != addrPort(r.relay) {
		t.Errorf("from %s, want %s", b, addrPort(r.relay))
	}
	if a1.(*net.UDPAddr).AddrPort() != addrPort(r.stranger) {
		t.Errorf("the first sender's address changed to %s", a1)
	}
	r.send(t, r.stranger, p)
	if _, a3 := r.read(t); a3 == b || a3.(*net.UDPAddr).AddrPort() != addrPort(r.stranger) {
		t.Errorf("back to the first sender: from %s (%p), relay's %p", a3, a3, b)
	}
}
