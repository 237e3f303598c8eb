package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

// echoOnce writes msg on c and reads the echo.
func echoOnce(c net.Conn, msg []byte) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

func TestDirectFlowSurvivesControlRestartAndRelayReturnsWithin2s(t *testing.T) {
	tp := newTopology(t,
		endpoint{name: "d", srcRoute: "direct", dstRoute: "any"},
		endpoint{name: "r", srcRoute: "relay", dstRoute: "any"},
	)
	tp.start(t)
	flow, err := net.DialTimeout("tcp", tp.srcAddr("d"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer flow.Close()
	if err := echoOnce(flow, []byte("before")); err != nil {
		t.Fatal(err)
	}

	relayID := serverRelayID(t, tp)
	tp.server.stop(t)
	// Control and relay are gone; the direct flow goes on.
	for i := range 10 {
		if err := echoOnce(flow, []byte(fmt.Sprintf("during-%d", i))); err != nil {
			t.Fatalf("direct flow broke while control was down: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	tp.startServer(t)
	restarted := time.Now()
	deadline := restarted.Add(2 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		got, err := echoRoundTrip(tp.srcAddr("r"), []byte("via relay"))
		if err == nil && string(got) == "via relay" {
			lastErr = nil
			break
		}
		lastErr = fmt.Errorf("got %q, %v", got, err)
		time.Sleep(50 * time.Millisecond)
	}
	if lastErr != nil {
		t.Fatalf("relay route not usable within 2s of the server restart: %v", lastErr)
	}
	t.Logf("relay route usable again %s after the server started", time.Since(restarted).Round(time.Millisecond))
	if err := echoOnce(flow, []byte("after")); err != nil {
		t.Fatalf("direct flow broke after control came back: %v", err)
	}
	if got := serverRelayID(t, tp); got != relayID {
		t.Errorf("relay identity changed across a restart with the same store-dir: %s, was %s", got, relayID)
	}
}

func serverRelayID(t *testing.T, tp *topology) string {
	t.Helper()
	var st struct {
		Relay struct {
			ID string `json:"id"`
		} `json:"relay"`
	}
	if err := getJSON(addr(tp.serverStatus), &st); err != nil || st.Relay.ID == "" {
		t.Fatalf("server status: %+v, %v", st, err)
	}
	return st.Relay.ID
}

func TestWrongTokenIsRefusedWithAClearError(t *testing.T) {
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.startServer(t)
	cfg := strings.Replace(readFile(t, tp.dir, "src.toml"), `token = "client-s-token"`, `token = "not-a-token"`, 1)
	writeFile(t, tp.dir, "bad.toml", cfg)
	bad := tp.connetd(t, "bad-client", "--config", "bad.toml")
	bad.waitLog(t, "control server refused this client; check the token", 10*time.Second)
	if !strings.Contains(bad.out.String(), "invalid token") {
		t.Errorf("client log does not say the token was invalid")
	}
	tp.server.waitLog(t, "client refused: invalid token", 5*time.Second)
	var st clientStatus
	if err := getJSON(addr(tp.srcStatus), &st); err != nil {
		t.Fatal(err)
	}
	if st.Control != "connecting" {
		t.Errorf("refused client reports control %q, want connecting", st.Control)
	}
}

func TestClientStartedBeforeServerConnectsWhenServerComesUp(t *testing.T) {
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.startEcho(t)
	tp.startClients(t)
	tp.src.waitLog(t, "control server unreachable, retrying", 10*time.Second)
	time.Sleep(1500 * time.Millisecond)
	tp.startServer(t)
	waitPath(t, addr(tp.srcStatus), "svc", "direct", 10*time.Second)
	got, err := echoRoundTrip(tp.srcAddr("svc"), []byte("late server"))
	if err != nil || string(got) != "late server" {
		t.Fatalf("echo through late server: %q, %v", got, err)
	}
}

func TestIncompatibleRoutesAreLoggedAndConnectionsRefused(t *testing.T) {
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "direct", dstRoute: "relay"})
	tp.startEcho(t)
	tp.startServer(t)
	tp.startClients(t)
	tp.src.waitLog(t, "routes are incompatible", 10*time.Second)
	c, err := net.DialTimeout("tcp", tp.srcAddr("svc"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	start := time.Now()
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil {
		t.Fatalf("read %d bytes, %v: want the connection closed", n, err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("connection was refused only after %s", waited)
	}
	tp.src.waitLog(t, "refusing connection: no usable path", 5*time.Second)
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := readFileBytes(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGarbageOnEveryPortLeavesTheDaemonsServing(t *testing.T) {
	tp := newTopology(t, endpoint{name: "d", srcRoute: "direct", dstRoute: "any"}, endpoint{name: "r", srcRoute: "relay", dstRoute: "any"})
	tp.start(t)
	var st struct {
		Observed string `json:"observed"`
	}
	if err := getJSON(addr(tp.dstStatus), &st); err != nil {
		t.Fatal(err)
	}
	targets := []string{addr(tp.serverPort), addr(tp.relayPort), st.Observed}
	rnd := rand.New(rand.NewPCG(1, 2))
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Random datagrams, some shaped like QUIC long headers and relay frames.
	for i := range 3000 {
		b := make([]byte, 1+rnd.IntN(1400))
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		switch i % 3 {
		case 0:
			b[0] = 0xc0 | b[0]&0x0f // QUIC long header
		case 1:
			b[0] = 0x01 // relay data frame
		}
		ua, _ := net.ResolveUDPAddr("udp", targets[i%len(targets)])
		_, _ = conn.WriteToUDP(b, ua)
	}
	// Random bytes into the TCP source listener too.
	if c, err := net.Dial("tcp", tp.srcAddr("d")); err == nil {
		_, _ = c.Write(bytes.Repeat([]byte{0xff, 0x00}, 4096))
		c.Close()
	}
	for _, name := range []string{"d", "r"} {
		got, err := echoRoundTrip(tp.srcAddr(name), []byte("still serving"))
		if err != nil || string(got) != "still serving" {
			t.Fatalf("%s after garbage: %q, %v", name, got, err)
		}
	}
	for _, p := range []*proc{tp.server, tp.dst, tp.src} {
		select {
		case <-p.done:
			t.Fatalf("%s exited after garbage", p.name)
		default:
		}
	}
}
