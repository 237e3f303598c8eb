package control

import (
	"fmt"
	"testing"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/wire"
)

func viewNames(t *testing.T, r *registry, s *session) []string {
	t.Helper()
	peers, _ := r.clientView(s)
	var out []string
	for _, p := range peers {
		out = append(out, fmt.Sprintf("%s/%s:%d", p.Endpoint, p.Role, len(p.Peers)))
	}
	return out
}

// A client's writer rebuilds only the endpoints whose peers may have
// changed since it last looked: a client with many names that announces one
// more costs control one endpoint's view, not all of them.
func TestClientViewHoldsOnlyWhatChanged(t *testing.T) {
	r := newRegistry()
	lim := Limits{}.withDefaults()
	var a, b *session
	for i, s := range []**session{&a, &b} {
		*s = newSession(identity.ID{byte(i + 1)}, nil, "192.0.2.1:1")
		(*s).token = "t"
		if _, err := r.addClient(*s, 16); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		if err := r.announce(a, fmt.Sprintf("e%02d", i), restrict.RoleSource, endpointInfo{route: "any"}, lim); err != nil {
			t.Fatal(err)
		}
	}
	if got := viewNames(t, r, a); len(got) != 50 {
		t.Fatalf("first view has %d endpoints, want all 50", len(got))
	}
	if got := viewNames(t, r, a); len(got) != 0 {
		t.Fatalf("nothing changed, yet the view holds %v", got)
	}
	// b offers one of a's names: a's view of that name changes, only.
	if err := r.announce(b, "e07", restrict.RoleDestination, endpointInfo{route: "any"}, lim); err != nil {
		t.Fatal(err)
	}
	if got := viewNames(t, r, a); len(got) != 1 || got[0] != "e07/source:1" {
		t.Fatalf("after b offered e07, a's view holds %v", got)
	}
	if got := viewNames(t, r, b); len(got) != 1 || got[0] != "e07/destination:1" {
		t.Fatalf("b's view holds %v", got)
	}
	// A changed candidate list concerns every name of its client's peers.
	r.setDirect(b, []string{"192.0.2.1:1", "198.51.100.1:2"}, "")
	if got := viewNames(t, r, a); len(got) != 1 || got[0] != "e07/source:1" {
		t.Fatalf("after b's candidates changed, a's view holds %v", got)
	}
	// A relay arriving is news for everyone: the whole view again.
	r.addRelay(newSession(identity.ID{9}, nil, "192.0.2.9:1"), "192.0.2.9:2")
	if got := viewNames(t, r, a); len(got) != 50 {
		t.Fatalf("after a relay came, a's view has %d endpoints, want 50", len(got))
	}
	// b leaves: a hears about e07 with no peers left.
	r.removeClient(b)
	if got := viewNames(t, r, a); len(got) != 1 || got[0] != "e07/source:0" {
		t.Fatalf("after b left, a's view holds %v", got)
	}
}

// The protocol a destination announced reaches its sources, so that a udp
// source knows a tcp destination of its name is no use to it.
func TestClientViewCarriesProto(t *testing.T) {
	r := newRegistry()
	lim := Limits{}.withDefaults()
	src, dst := newSession(identity.ID{1}, nil, "192.0.2.1:1"), newSession(identity.ID{2}, nil, "192.0.2.2:1")
	for _, s := range []*session{src, dst} {
		s.token = "t"
		if _, err := r.addClient(s, 16); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.announce(src, "dns", restrict.RoleSource, endpointInfo{route: "any", proto: wire.ProtoUDP}, lim); err != nil {
		t.Fatal(err)
	}
	if err := r.announce(dst, "dns", restrict.RoleDestination, endpointInfo{route: "any", proto: wire.ProtoUDP}, lim); err != nil {
		t.Fatal(err)
	}
	peers, _ := r.clientView(src)
	if len(peers) != 1 || len(peers[0].Peers) != 1 || peers[0].Peers[0].Proto != wire.ProtoUDP {
		t.Fatalf("source's view: %+v, want one udp destination", peers)
	}
	// Re-announced as tcp (removed and added again with a tcp:// URL).
	if err := r.announce(dst, "dns", restrict.RoleDestination, endpointInfo{route: "any"}, lim); err != nil {
		t.Fatal(err)
	}
	peers, _ = r.clientView(src)
	if len(peers) != 1 || len(peers[0].Peers) != 1 || wire.ProtoOf(peers[0].Peers[0].Proto) != wire.ProtoTCP {
		t.Fatalf("source's view after tcp announce: %+v", peers)
	}
}
