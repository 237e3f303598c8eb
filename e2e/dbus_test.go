package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/dbusapi"
)

// bus is a private dbus-daemon whose policy includes the project's real
// policy file, as the system bus would.
type bus struct {
	addr string
}

func startBus(t *testing.T) *bus { return startBusWith(t, "") }

// permissivePolicy lets everyone do everything: what is left to refuse a
// caller is connetd's own check.
const permissivePolicy = `<policy context="default"><allow own="*"/><allow send_type="method_call"/></policy>`

func startBusWith(t *testing.T, extraPolicy string) *bus {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon not installed (Debian package dbus); .ci/run installs it")
	}
	dir := t.TempDir()
	// Callers run as nobody too: they need to reach the socket.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	policy, err := filepath.Abs("../units/org.connetd.Connetd1.conf")
	if err != nil {
		t.Fatal(err)
	}
	// Like Debian's system.conf: by default no one owns names or calls
	// methods; the included policy opens what connetd allows.
	writeFile(t, dir, "bus.conf", fmt.Sprintf(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>%s</include>
  %s
</busconfig>
`, dir, policy, extraPolicy))
	if err := os.Chmod(filepath.Join(dir, "bus.conf"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--config-file="+filepath.Join(dir, "bus.conf"), "--nofork", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("--- dbus-daemon ---\n%s", stderr.String())
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v\n%s", err, stderr.String())
	}
	return &bus{addr: strings.TrimSpace(line)}
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
