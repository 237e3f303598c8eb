package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// initCtl runs connetctl with no bus at all: init needs none.
func initCtl(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "connetctl"), args...)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/connetd-e2e")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("connetctl %q: %v\n%s", args, err, out)
	}
}

// What "connetctl init server" writes runs a server as it is, and two
// bundles installed with "connetctl init client", given an endpoint each,
// carry traffic directly and through the relay.
func TestInitServerAndClientBundlesCarryTraffic(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc")
	port, relayPort := freePort(t), freePort(t)
	initCtl(t, "init", "server", "--public-addr", "127.0.0.1", "--out", etc,
		"--port", strconv.Itoa(port), "--relay-port", strconv.Itoa(relayPort))
	initCtl(t, "init", "client", "--from", filepath.Join(etc, "clients", "client-1"), "--out", filepath.Join(dir, "dst"), "--name", "dst")
	initCtl(t, "init", "client", "--from", filepath.Join(etc, "clients", "client-2"), "--out", filepath.Join(dir, "src"), "--name", "src")

	echoPort, srcStatus := freePort(t), freePort(t)
	srcPorts := map[string]int{"svc": freePort(t), "svc-relayed": freePort(t)}
	// The installed files end inside [client]: keys appended land there.
	appendFile(t, filepath.Join(dir, "dst", "dst.toml"), fmt.Sprintf(`direct-addr = %q

[client.destinations.svc]
addr = %q

[client.destinations.svc-relayed]
addr = %q
route = "relay"
`, addr(freePort(t)), addr(echoPort), addr(echoPort)))
	appendFile(t, filepath.Join(dir, "src", "src.toml"), fmt.Sprintf(`direct-addr = %q
status-addr = %q

[client.sources.svc]
addr = %q

[client.sources.svc-relayed]
addr = %q
`, addr(freePort(t)), addr(srcStatus), addr(srcPorts["svc"]), addr(srcPorts["svc-relayed"])))

	daemon := func(name string, args ...string) *proc {
		cmd := exec.Command(filepath.Join(binDir, "connetd"), args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+filepath.Join(dir, "state-"+name))
		return startCmd(t, name, cmd)
	}
	echo := startProc(t, dir, "echod", filepath.Join(binDir, "echod"), addr(echoPort))
	echo.waitLog(t, "listening", 10*time.Second)
	server := daemon("server", "server", "--config", filepath.Join(etc, "server.toml"))
	server.waitLog(t, "control listening for clients", 10*time.Second)
	daemon("dst", "--config", filepath.Join(dir, "dst", "dst.toml"))
	daemon("src", "--config", filepath.Join(dir, "src", "src.toml"))

	for name, path := range map[string]string{"svc": "direct", "svc-relayed": "relay"} {
		waitPath(t, addr(srcStatus), name, path, 15*time.Second)
		payload := make([]byte, 256<<10)
		rand.Read(payload)
		got, err := echoRoundTrip(addr(srcPorts[name]), payload)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("%s over %s: %d of %d bytes back, %v", name, path, len(got), len(payload), err)
		}
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
