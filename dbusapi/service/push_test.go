package service

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/daemon"
	"github.com/connetd/connetd/dbusapi"
)

// maxLatency is how long a data-plane change may take to show on the bus.
const maxLatency = 100 * time.Millisecond

// pathChange is the moment the daemon's own status first showed a path.
type pathChange struct {
	at         time.Time
	peer, path string // path "none" also when the peer went away
}

// pathRecorder follows the path of the first peer of one endpoint in the
// daemon's status. It polls every millisecond besides waking on the
// daemon's notification, so it sees a change when the data plane made it,
// whether or not the notification is prompt: latency is measured from here.
type pathRecorder struct {
	mu      sync.Mutex
	changes []pathChange
}

func recordPaths(t *testing.T, d *daemon.Daemon, kind, name string) *pathRecorder {
	r := &pathRecorder{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		peer, last := "", ""
		for {
			changed := d.Changed()
			now, path := time.Now(), "none"
			if id, p, ok := firstPeer(d.Snapshot(), kind, name); ok {
				peer, path = id, p
			}
			if peer != "" && path != last {
				r.mu.Lock()
				r.changes = append(r.changes, pathChange{at: now, peer: peer, path: path})
				r.mu.Unlock()
				last = path
			}
			select {
			case <-stop:
				return
			case <-changed:
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return r
}

func firstPeer(s daemon.Snapshot, kind, name string) (id, path string, ok bool) {
	if s.Client == nil {
		return "", "", false
	}
	list := s.Client.Sources
	if kind == "destination" {
		list = s.Client.Destinations
	}
	for _, e := range list {
		if e.Name == name && len(e.Peers) > 0 {
			return e.Peers[0].ID, e.Peers[0].Path, true
		}
	}
	return "", "", false
}

// await waits for the status to show path after the change numbered
// from (0 is the first) and returns that change and its number.
func (r *pathRecorder) await(t *testing.T, path string, from int, timeout time.Duration) (pathChange, int) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		for i := from; i < len(r.changes); i++ {
			if c := r.changes[i]; c.path == path {
				r.mu.Unlock()
				return c, i
			}
		}
		r.mu.Unlock()
	}
	t.Fatalf("the status never showed path %q (saw %+v)", path, r.changes)
	return pathChange{}, 0
}

// received is a signal and when it arrived.
type received struct {
	at time.Time
	s  *dbus.Signal
}

// signalLog collects every signal from one bus name, stamped on arrival.
type signalLog struct {
	mu   sync.Mutex
	sigs []received
}

func collectSignals(t *testing.T, conn *dbus.Conn, busName string) *signalLog {
	if err := conn.AddMatchSignal(dbus.WithMatchSender(busName)); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *dbus.Signal, 1024)
	conn.Signal(ch)
	l := &signalLog{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case s := <-ch:
				l.mu.Lock()
				l.sigs = append(l.sigs, received{at: time.Now(), s: s})
				l.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { conn.RemoveSignal(ch); close(stop); <-done })
	return l
}

// mark numbers the next signal to arrive.
func (l *signalLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sigs)
}

// await returns the first signal from number `from` on that match accepts.
func (l *signalLog) await(t *testing.T, what string, from int, match func(*dbus.Signal) bool) received {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		for _, r := range l.sigs[from:] {
			if match(r.s) {
				l.mu.Unlock()
				return r
			}
		}
		l.mu.Unlock()
	}
	t.Fatalf("no %s signal", what)
	return received{}
}

// before returns the signals before r that match accepts.
func (l *signalLog) before(r received, match func(*dbus.Signal) bool) []*dbus.Signal {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*dbus.Signal
	for _, s := range l.sigs {
		if s.s == r.s {
			break
		}
		if match(s.s) {
			out = append(out, s.s)
		}
	}
	return out
}

// propertyChanged matches PropertiesChanged of iface on path that sets
// name to a value ok accepts.
func propertyChanged(path dbus.ObjectPath, iface, name string, ok func(dbus.Variant) bool) func(*dbus.Signal) bool {
	return func(s *dbus.Signal) bool {
		if s.Path != path || s.Name != dbusapi.PropertiesIface+".PropertiesChanged" || len(s.Body) < 2 || s.Body[0] != iface {
			return false
		}
		changed, _ := s.Body[1].(map[string]dbus.Variant)
		v, has := changed[name]
		return has && ok(v)
	}
}

// peerPathChanged matches PeerPathChanged of peer on path to newPath, or
// to any path when newPath is "".
func peerPathChanged(path dbus.ObjectPath, peer, newPath string) func(*dbus.Signal) bool {
	return func(s *dbus.Signal) bool {
		return s.Path == path && s.Name == dbusapi.EndpointIface+".PeerPathChanged" &&
			len(s.Body) == 3 && s.Body[0] == peer && (newPath == "" || s.Body[2] == newPath)
	}
}

// checkLatency fails when a signal came later than maxLatency after the
// status showed the change; it reports the latency either way.
func checkLatency(t *testing.T, what string, change pathChange, r received) {
	t.Helper()
	d := r.at.Sub(change.at)
	t.Logf("%s: on the bus %v after the status showed it", what, d.Round(10*time.Microsecond))
	if d > maxLatency {
		t.Errorf("%s arrived %v after the data plane changed; want < %v", what, d, maxLatency)
	}
}

// pathLab is a source "svc" on instance src, served on a private bus, and a
// signal log of src; the destination is left to the test to start.
type pathLab struct {
	lab  *lab
	src  *running
	sigs *signalLog
	rec  *pathRecorder
}

func newPathLab(t *testing.T) *pathLab {
	busAddr := startBus(t)
	l := newLab(t)
	src := l.client("src", "t-src", fmt.Sprintf("[client.sources.svc]\naddr = %q\nroute = \"direct\"\n", freeAddr(t, "tcp")))
	serveBus(t, busAddr, src.d)
	return &pathLab{lab: l, src: src, sigs: collectSignals(t, connect(t, busAddr), dbusapi.BusName("src")),
		rec: recordPaths(t, src.d, "source", "svc")}
}

// startDestination starts the peer: a destination "svc" on instance dst.
func (p *pathLab) startDestination(t *testing.T) *running {
	return p.lab.client("dst", "t-dst", fmt.Sprintf("[client.destinations.svc]\naddr = %q\n", freeAddr(t, "tcp")))
}
