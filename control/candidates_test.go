package control

import (
	"slices"
	"testing"
)

// A client's reported candidates are its own word: control passes on only
// those a peer may probe without being turned against a third party.
func TestProbeTargetsKeepOnlyAddressesAPeerMayProbe(t *testing.T) {
	of := &session{observed: "203.0.113.5:41000", direct: []string{
		"203.0.113.5:41000",  // observed
		"203.0.113.5:19192",  // a port mapping on its router
		"198.51.100.9:19192", // another public address of its own
		"192.168.1.20:19192", // its LAN address
		"127.0.0.1:19192",    // loopback
		"224.0.0.1:19192",    // multicast
		"169.254.3.4:19192",  // link-local
		"0.0.0.0:19192",      // unspecified
		"255.255.255.255:19192",
		"[fe80::1]:19192",
		"[2001:db8::5]:19192", // public IPv6
		"[fd00::5]:19192",     // unique local
		"100.64.3.3:19192",    // carrier NAT
	}}
	elsewhere := &session{observed: "198.51.100.77:5000"}
	got := probeTargets(of, elsewhere)
	want := []string{"203.0.113.5:41000", "203.0.113.5:19192", "198.51.100.9:19192", "[2001:db8::5]:19192"}
	if !slices.Equal(got, want) {
		t.Fatalf("toward a peer elsewhere: %v, want %v", got, want)
	}
	sameNAT := &session{observed: "203.0.113.5:52000"}
	got = probeTargets(of, sameNAT)
	want = []string{"203.0.113.5:41000", "203.0.113.5:19192", "198.51.100.9:19192", "192.168.1.20:19192",
		"127.0.0.1:19192", "[2001:db8::5]:19192", "[fd00::5]:19192", "100.64.3.3:19192"}
	if !slices.Equal(got, want) {
		t.Fatalf("toward a peer behind the same address: %v, want %v", got, want)
	}
}
