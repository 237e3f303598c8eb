package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/internal/udptest"
)

// UDP through the real binaries: udp:// endpoints, direct and through the
// relay, with the destination's service an echo in the test.

// udpTopology is a topology whose endpoints are all udp:// URLs: "d"
// direct, "r" relayed. extra is added to every endpoint table of the
// destination.
func udpTopology(t *testing.T, extra string) (*topology, *udptest.Echo) {
	t.Helper()
	tp := newTopology(t, endpoint{name: "d", srcRoute: "direct", dstRoute: "direct"},
		endpoint{name: "r", srcRoute: "relay", dstRoute: "relay"})
	echo := udptest.ListenEcho(t, addr(tp.echoPort))
	tp.writeClient(t, "dst.toml", "client-d-token", tp.dstStatus, "destinations", func(name string) string {
		return fmt.Sprintf("url = \"udp://%s\"\nroute = %q\n%s", addr(tp.echoPort), tp.routes[name][1], extra)
	})
	tp.writeClient(t, "src.toml", "client-s-token", tp.srcStatus, "sources", func(name string) string {
		return fmt.Sprintf("url = \"udp://%s\"\nroute = %q\n", tp.srcAddr(name), tp.routes[name][0])
	})
	return tp, echo
}

// udpStatus is the UDP state of endpoint name of the client at statusAddr.
func udpStatus(t *testing.T, statusAddr, kind, name string) client.EndpointStatus {
	t.Helper()
	var st client.Status
	if err := getJSON(statusAddr, &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	list := st.Sources
	if kind == "destination" {
		list = st.Destinations
	}
	for _, e := range list {
		if e.Name == name && e.UDP != nil {
			return e
		}
	}
	t.Fatalf("no udp %s %s in status: %+v", kind, name, list)
	return client.EndpointStatus{}
}

func waitUDP(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func TestUDPDirectAndRelayedThroughTheDaemons(t *testing.T) {
	tp, echo := udpTopology(t, "")
	tp.startDaemons(t)
	srcStatus, dstStatus := addr(tp.srcStatus), addr(tp.dstStatus)
	for _, name := range []string{"d", "r"} {
		route := map[string]string{"d": "direct", "r": "relay"}[name]
		t.Run(route, func(t *testing.T) {
			st := udpStatus(t, srcStatus, "source", name)
			if st.Proto != "udp" || st.UDP.MaxPayload < 1100 {
				t.Fatalf("source status: proto %q, max payload %d", st.Proto, st.UDP.MaxPayload)
			}
			c := udptest.Dial(t, tp.srcAddr(name))
			// 10,000 datagrams, 16 in flight: UDP over QUIC datagrams is
			// not retransmitted, and a datagram caught by the flow's
			// start on a path that just came up may be lost; a tenth of
			// a percent may be, the rest must come back intact.
			if err := udptest.ExchangeLossy(c, 10000, st.UDP.MaxPayload, 16, "bulk-"+name, 10); err != nil {
				t.Fatal(err)
			}
			before := echo.Clients()
			var wg sync.WaitGroup
			for i := range 100 {
				fc := udptest.Dial(t, tp.srcAddr(name))
				wg.Go(func() {
					if err := udptest.Exchange(fc, 20, 300, 1, fmt.Sprintf("%s%03d", name, i)); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			if got := echo.Clients() - before; got != 100 {
				t.Fatalf("100 flows reached the service from %d addresses", got)
			}
			src, dst := udpStatus(t, srcStatus, "source", name), udpStatus(t, dstStatus, "destination", name)
			if src.UDP.Flows != 101 || dst.UDP.Flows != 101 {
				t.Fatalf("open flows: source %d, destination %d; want 101", src.UDP.Flows, dst.UDP.Flows)
			}
			if len(src.Peers) != 1 || len(src.Peers[0].ByPath) != 1 || src.Peers[0].ByPath[0].Path != route ||
				src.Peers[0].ByPath[0].BytesOut != src.BytesOut || src.BytesOut != dst.BytesIn {
				t.Fatalf("bytes: source %d out by path %+v, destination %d in; want all on %s", src.BytesOut, src.Peers, dst.BytesIn, route)
			}
			// One byte over what the path carries is dropped, not cut.
			maxPayload := udpStatus(t, srcStatus, "source", name).UDP.MaxPayload
			if _, err := c.Write(make([]byte, maxPayload+1)); err != nil {
				t.Fatal(err)
			}
			waitUDP(t, "the oversize datagram counted", func() bool {
				return udpStatus(t, srcStatus, "source", name).UDP.DroppedOversize == 1
			})
			if err := udptest.Exchange(c, 5, 64, 1, "after-"+name); err != nil {
				t.Fatalf("after the oversize datagram: %v", err)
			}
		})
	}
	// The relay carried only the relayed endpoint's traffic, as ciphertext
	// it cannot read: it splices the peers' end-to-end QUIC packets.
	if strings.Contains(tp.server.out.String(), "bulk-r") {
		t.Fatal("the relay logged plaintext of a relayed datagram")
	}
}

func TestUDPIdleTimeoutAndFlowCapThroughTheDaemons(t *testing.T) {
	tp, echo := udpTopology(t, "udp-idle-timeout = \"1s\"\nudp-max-flows = 3\n")
	tp.startDaemons(t)
	srcStatus, dstStatus := addr(tp.srcStatus), addr(tp.dstStatus)
	var flows []*net.UDPConn
	for i := range 3 {
		c := udptest.Dial(t, tp.srcAddr("d"))
		if err := udptest.Exchange(c, 3, 64, 1, fmt.Sprintf("cap%d", i)); err != nil {
			t.Fatal(err)
		}
		flows = append(flows, c)
	}
	over := udptest.Dial(t, tp.srcAddr("d"))
	if _, err := over.Write([]byte("one flow too many")); err != nil {
		t.Fatal(err)
	}
	_ = over.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := over.Read(make([]byte, 64)); err == nil {
		t.Fatal("a flow over udp-max-flows got a reply")
	}
	waitUDP(t, "the refused flow counted", func() bool { return udpStatus(t, dstStatus, "destination", "d").UDP.FlowsRefused == 1 })
	tp.dst.waitLog(t, "udp flow refused", 5*time.Second)

	// After a second of silence the destination closes the flows' sockets;
	// the next datagram of a flow comes from a new socket.
	waitUDP(t, "the flows to idle out", func() bool {
		return udpStatus(t, dstStatus, "destination", "d").UDP.Flows == 0 && udpStatus(t, srcStatus, "source", "d").UDP.Flows == 0
	})
	before := echo.Clients()
	if err := udptest.Exchange(flows[0], 3, 64, 1, "again"); err != nil {
		t.Fatal(err)
	}
	if echo.Clients() != before+1 {
		t.Fatalf("after the idle timeout the service saw %d addresses, want %d: the old socket was kept", echo.Clients(), before+1)
	}
}

// A udp source whose socket systemd passed (ListenDatagram=, named
// source-NAME) uses it instead of binding its url.
func TestUDPSourceFromASocketActivatedDatagramSocket(t *testing.T) {
	tp, _ := udpTopology(t, "")
	tp.startServer(t)
	tp.dst = tp.connetd(t, "dst", "--config", "dst.toml")
	port := freePort(t)
	f := udpFile(t, port)
	tp.src = activated(t, tp.dir, "src", []*os.File{f}, []string{"source-d"}, nil, "--config", "src.toml")
	tp.src.waitLog(t, "using socket from systemd", 10*time.Second)
	waitPath(t, addr(tp.srcStatus), "d", "direct", 15*time.Second)
	c := udptest.Dial(t, addr(port))
	if err := udptest.Exchange(c, 50, 500, 4, "activated"); err != nil {
		t.Fatal(err)
	}
	if st := udpStatus(t, addr(tp.srcStatus), "source", "d"); st.Addr != addr(port) {
		t.Fatalf("source listens on %s, want the passed socket's %s", st.Addr, addr(port))
	}
}

// connetctl adds udp endpoints by URL, over D-Bus, and shows them as URLs;
// a udp-only setting on a tcp endpoint, or PROXY protocol on a udp one,
// is refused naming the key.
func TestConnetctlAddsUDPEndpoints(t *testing.T) {
	b := startBus(t)
	tp := dbusTopology(t, b)
	echo := udptest.ListenEcho(t, "127.0.0.1:0")
	port := freePort(t)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--instance", "dst", "add-destination", "dns", "udp://" + echo.Addr(), "--proxy-proto-version", "v2"}, "client.destinations.dns.proxy-proto-version: PROXY protocol does not apply to udp"},
		{[]string{"--instance", "src", "add-source", "web", addr(port), "--udp-max-flows", "5"}, "client.sources.web.udp-max-flows: applies only to udp:// endpoints"},
		{[]string{"--instance", "src", "add-source", "dns", "sctp://" + addr(port)}, `scheme "sctp" is not one of tcp, udp`},
	} {
		if out, errOut, code := connetctl(t, b, "", tc.args...); code != 1 || !strings.Contains(errOut, tc.msg) {
			t.Errorf("connetctl %v: exit %d, stderr %q; want exit 1 mentioning %q (stdout %q)", tc.args, code, errOut, tc.msg, out)
		}
	}
	if out, errOut, code := connetctl(t, b, "", "--instance", "dst", "add-destination", "dns", "udp://"+echo.Addr()); code != 0 {
		t.Fatalf("add-destination: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := connetctl(t, b, "", "--instance", "src", "add-source", "dns", "udp://"+addr(port),
		"--udp-idle-timeout", "30s", "--udp-max-flows", "10"); code != 0 {
		t.Fatalf("add-source: exit %d\n%s%s", code, out, errOut)
	}
	waitPath(t, addr(tp.srcStatus), "dns", "direct", 10*time.Second)
	if err := udptest.Exchange(udptest.Dial(t, addr(port)), 100, 1000, 4, "ctl"); err != nil {
		t.Fatal(err)
	}
	st := udpStatus(t, addr(tp.srcStatus), "source", "dns")
	if st.UDP.MaxFlows != 10 || st.UDP.IdleTimeoutS != 30 || st.UDP.Flows != 1 {
		t.Fatalf("source udp status %+v: want the options connetctl passed", st.UDP)
	}
	out, errOut, code := connetctl(t, b, "", "--instance", "src", "status")
	if code != 0 || !strings.Contains(out, "udp://"+addr(port)) {
		t.Fatalf("status does not show the udp source as a URL: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = connetctl(t, b, "", "--instance", "dst", "--json", "list")
	if code != 0 || !strings.Contains(out, "udp://"+echo.Addr()) {
		t.Fatalf("list does not show the udp destination as a URL: exit %d\n%s", code, out)
	}
}
