package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/dbusapi"
	"github.com/connetd/connetd/internal/testbus"
)

// bus is a private dbus-daemon whose policy includes the project's real
// policy file, as the system bus would.
type bus struct {
	addr string
}

func startBus(t *testing.T) *bus { return startBusWith(t, "") }

// permissivePolicy lets everyone do everything: what is left to refuse a
// caller is connetd's own check.
const permissivePolicy = testbus.Permissive

func startBusWith(t *testing.T, extraPolicy string) *bus {
	t.Helper()
	return &bus{addr: testbus.Start(t, "..", extraPolicy)}
}

func (b *bus) env() []string { return []string{"DBUS_SYSTEM_BUS_ADDRESS=" + b.addr} }

// connect opens a client connection to the bus, as the test's user.
func (b *bus) connect(t *testing.T) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(b.addr)
	if err != nil {
		t.Fatalf("connect to private bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// waitName waits until an instance owns its bus name.
func (b *bus) waitName(t *testing.T, conn *dbus.Conn, instance string) dbus.BusObject {
	t.Helper()
	name := dbusapi.BusName(instance)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var has bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has); err == nil && has {
			return conn.Object(name, dbusapi.ManagerPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never appeared on the bus", name)
	return nil
}

func call(ctx context.Context, obj dbus.BusObject, method string, args ...any) *dbus.Call {
	return obj.CallWithContext(ctx, method, 0, args...)
}

func TestDBusAddSourceCarriesTrafficAndRemoveClosesIt(t *testing.T) {
	b := startBus(t)
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	writeFile(t, tp.dir, "src.toml", dropTable(readFile(t, tp.dir, "src.toml"), "[client.sources.svc]"))
	tp.env = b.env()
	tp.startEcho(t)
	tp.startServer(t)
	tp.startClients(t)
	conn := b.connect(t)
	obj := b.waitName(t, conn, "src")

	if err := conn.AddMatchSignal(dbus.WithMatchSender(dbusapi.BusName("src"))); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *dbus.Signal, 256)
	conn.Signal(signals)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var role, state string
	if err := obj.StoreProperty(dbusapi.ManagerIface+".Role", &role); err != nil || role != "client" {
		t.Fatalf("Role = %q, %v", role, err)
	}
	port := freePort(t)
	var path dbus.ObjectPath
	if err := call(ctx, obj, dbusapi.ClientIface+".AddSource", "svc", addr(port), map[string]dbus.Variant{"route": dbus.MakeVariant("direct")}).Store(&path); err != nil {
		t.Fatalf("AddSource: %v", err)
	}
	if path != dbusapi.EndpointPath("source", "svc") {
		t.Fatalf("AddSource returned %s", path)
	}
	ep := conn.Object(dbusapi.BusName("src"), path)
	// The peer's path shows up in the endpoint's properties and as a signal.
	deadline := time.Now().Add(15 * time.Second)
	var peers []dbusapi.PeerInfo
	for time.Now().Before(deadline) {
		if err := ep.StoreProperty(dbusapi.EndpointIface+".Peers", &peers); err == nil && len(peers) == 1 && peers[0].Path == "direct" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(peers) != 1 || peers[0].Path != "direct" {
		t.Fatalf("Peers = %+v, want one direct peer", peers)
	}
	got, err := echoRoundTrip(addr(port), []byte("added over D-Bus"))
	if err != nil || string(got) != "added over D-Bus" {
		t.Fatalf("echo through the added source: %q, %v", got, err)
	}
	var origin string
	if err := ep.StoreProperty(dbusapi.EndpointIface+".Origin", &origin); err != nil || origin != "runtime" {
		t.Errorf("Origin = %q, %v; want runtime", origin, err)
	}
	var managed map[dbus.ObjectPath]map[string]map[string]dbus.Variant
	if err := call(ctx, obj, dbusapi.ObjectManagerIface+".GetManagedObjects").Store(&managed); err != nil {
		t.Fatal(err)
	}
	if _, ok := managed[path]; !ok {
		t.Errorf("GetManagedObjects does not list %s: %v", path, managed)
	}
	if err := obj.StoreProperty(dbusapi.ManagerIface+".State", &state); err != nil || state != "running" {
		t.Errorf("State = %q, %v", state, err)
	}

	if err := call(ctx, obj, dbusapi.ClientIface+".RemoveSource", "svc").Err; err != nil {
		t.Fatalf("RemoveSource: %v", err)
	}
	if c, err := netDial(addr(port)); err == nil {
		c.Close()
		t.Error("the removed source still listens")
	}
	want := map[string]bool{
		dbusapi.ManagerIface + ".EndpointAdded":             false,
		dbusapi.ObjectManagerIface + ".InterfacesAdded":     false,
		dbusapi.EndpointIface + ".PeerPathChanged":          false,
		dbusapi.ManagerIface + ".EndpointRemoved":           false,
		dbusapi.ObjectManagerIface + ".InterfacesRemoved":   false,
		"org.freedesktop.DBus.Properties.PropertiesChanged": false,
	}
	timeout := time.After(5 * time.Second)
	for missing := len(want); missing > 0; {
		select {
		case s := <-signals:
			if seen, ok := want[s.Name]; ok && !seen {
				if s.Name == dbusapi.EndpointIface+".PeerPathChanged" && (len(s.Body) != 3 || s.Body[2] != "direct") {
					continue
				}
				want[s.Name] = true
				missing--
			}
		case <-timeout:
			t.Fatalf("signals not received: %v", want)
		}
	}
}
