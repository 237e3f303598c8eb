package service

import (
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/dbusapi"
	"github.com/connetd/connetd/internal/testbus"
)

func startBus(t *testing.T) string { return testbus.Start(t, "../..", "") }

// A peer's path appearing and going away is on the bus, as the Manager's
// PeersDirect and the endpoint's Peers, within maxLatency of the status
// showing it.
func TestPropertiesFollowThePathWithin100ms(t *testing.T) {
	p := newPathLab(t)
	dst := p.startDestination(t)
	direct, n := p.rec.await(t, "direct", 0, 30*time.Second)
	ep := dbusapi.EndpointPath("source", "svc")
	checkLatency(t, "PeersDirect = 1", direct, p.sigs.await(t, "PeersDirect = 1", 0,
		propertyChanged(dbusapi.ManagerPath, dbusapi.ManagerIface, "PeersDirect", uint32Is(1))))
	checkLatency(t, "endpoint Peers direct", direct, p.sigs.await(t, "Peers with a direct path", 0,
		propertyChanged(ep, dbusapi.EndpointIface, "Peers", peersOn(direct.peer, "direct"))))

	from := p.sigs.mark()
	dst.stop()
	gone, _ := p.rec.await(t, "none", n+1, 10*time.Second)
	checkLatency(t, "PeersDirect = 0", gone, p.sigs.await(t, "PeersDirect = 0", from,
		propertyChanged(dbusapi.ManagerPath, dbusapi.ManagerIface, "PeersDirect", uint32Is(0))))
}

// PeerPathChanged says where a peer's path came from: the path signalled
// before ("" for a new peer), and "direct" when the peer of a direct path
// goes away (its path is then "none").
func TestPeerPathChangedCarriesTheOldPath(t *testing.T) {
	p := newPathLab(t)
	dst := p.startDestination(t)
	direct, n := p.rec.await(t, "direct", 0, 30*time.Second)
	ep := dbusapi.EndpointPath("source", "svc")
	r := p.sigs.await(t, "PeerPathChanged to direct", 0, peerPathChanged(ep, direct.peer, "direct"))
	checkLatency(t, "PeerPathChanged → direct", direct, r)
	prev := ""
	for _, s := range p.sigs.before(r, peerPathChanged(ep, direct.peer, "")) {
		prev = s.Body[2].(string)
	}
	if old := r.s.Body[1]; old != prev {
		t.Errorf("PeerPathChanged(%s, %q, direct): want old %q, the path signalled before", direct.peer, old, prev)
	}

	from := p.sigs.mark()
	dst.stop()
	gone, _ := p.rec.await(t, "none", n+1, 10*time.Second)
	r = p.sigs.await(t, "PeerPathChanged to none", from, peerPathChanged(ep, direct.peer, "none"))
	checkLatency(t, "PeerPathChanged → none", gone, r)
	if old := r.s.Body[1]; old != "direct" {
		t.Errorf("PeerPathChanged(%s, %q, none) when the destination stopped: want old \"direct\"", direct.peer, old)
	}
}

func uint32Is(n uint32) func(dbus.Variant) bool {
	return func(v dbus.Variant) bool { return v.Value() == n }
}

func peersOn(peer, path string) func(dbus.Variant) bool {
	return func(v dbus.Variant) bool {
		var peers []dbusapi.PeerInfo
		if err := v.Store(&peers); err != nil {
			return false
		}
		for _, p := range peers {
			if p.ID == peer && p.Path == path {
				return true
			}
		}
		return false
	}
}
