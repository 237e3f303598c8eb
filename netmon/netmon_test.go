package netmon

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/connetd/connetd/internal/testenv"
)

// testNS makes a network namespace with a veth pair (a up, b down) and
// removes it when the test ends. It needs root and ip(8).
func testNS(t *testing.T) netns.NsHandle {
	t.Helper()
	testenv.RequireRoot(t, "create a network namespace")
	testenv.RequireTool(t, "ip", "iproute2")
	name := fmt.Sprintf("cnd-netmon-%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
	ip("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ip("-n", name, "link", "add", "va", "type", "veth", "peer", "name", "vb")
	ip("-n", name, "link", "set", "va", "up")
	ip("-n", name, "link", "set", "lo", "up")
	ip("-n", name, "addr", "add", "10.99.0.2/24", "dev", "va")
	ip("-n", name, "addr", "add", "10.98.0.2/24", "dev", "vb")
	ip("-n", name, "route", "add", "default", "via", "10.99.0.1")
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestReadListsUsableAddressesAndTheGateway(t *testing.T) {
	ns := testNS(t)
	st, err := Read(Options{Namespace: &ns})
	if err != nil {
		t.Fatal(err)
	}
	// b is down, lo is loopback, the veth's fe80:: address is link-local.
	if want := []netip.Addr{netip.MustParseAddr("10.99.0.2")}; !slices.Equal(st.Addrs, want) {
		t.Fatalf("Addrs = %v, want %v", st.Addrs, want)
	}
	if st.Gateway != netip.MustParseAddr("10.99.0.1") || st.GatewaySrc != netip.MustParseAddr("10.99.0.2") {
		t.Fatalf("gateway %v from %v", st.Gateway, st.GatewaySrc)
	}
}

func TestWatchReportsAnAddressChangeOnce(t *testing.T) {
	ns := testNS(t)
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, Options{Namespace: &ns, Debounce: 200 * time.Millisecond}, func() { changes <- struct{}{} })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()
	time.Sleep(200 * time.Millisecond) // subscribed
	name := fmt.Sprintf("cnd-netmon-%d", os.Getpid())
	for _, args := range [][]string{
		{"-n", name, "addr", "del", "10.99.0.2/24", "dev", "va"},
		{"-n", name, "addr", "add", "10.99.0.3/24", "dev", "va"},
		{"-n", name, "route", "add", "default", "via", "10.99.0.1"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported within 5s")
	}
	select {
	case <-changes:
		t.Fatal("one burst of changes was reported twice")
	case <-time.After(500 * time.Millisecond):
	}
	st, err := Read(Options{Namespace: &ns})
	if err != nil || !slices.Contains(st.Addrs, netip.MustParseAddr("10.99.0.3")) {
		t.Fatalf("after the change: %+v, %v", st, err)
	}
}
