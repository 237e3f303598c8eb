package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// openFlow opens a TCP connection through a source and echoes one line
// over it: a flow in use, closed when the test ends.
func openFlow(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := echoOnce(c, []byte("before")); err != nil {
		t.Fatal(err)
	}
	return c
}

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
	flow := openFlow(t, tp.srcAddr("d"))

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

// udpSocket is what the kernel reports of one UDP socket in /proc/net/udp
// or udp6.
type udpSocket struct {
	rxQueue uint64 // bytes received and not yet read
	drops   uint64 // datagrams dropped on arrival (a full buffer)
}

// kernelUDP returns the kernel's view of the one unconnected UDP socket
// bound to port (IPv4 or dual-stack).
func kernelUDP(port int) (udpSocket, error) {
	var found []udpSocket
	for _, file := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			return udpSocket{}, err
		}
		for l := range strings.Lines(string(b)) {
			f := strings.Fields(l)
			if len(f) < 13 || f[0] == "sl" {
				continue
			}
			local, remote := f[1], f[2]
			p, err := strconv.ParseUint(local[strings.LastIndexByte(local, ':')+1:], 16, 16)
			if err != nil || int(p) != port || strings.Trim(remote, "0:") != "" {
				continue
			}
			queues := strings.SplitN(f[4], ":", 2) // tx_queue:rx_queue
			rx, err1 := strconv.ParseUint(queues[len(queues)-1], 16, 64)
			drops, err2 := strconv.ParseUint(f[12], 10, 64)
			if err := errors.Join(err1, err2); err != nil {
				return udpSocket{}, fmt.Errorf("%s: %q: %w", file, l, err)
			}
			found = append(found, udpSocket{rxQueue: rx, drops: drops})
		}
	}
	if len(found) != 1 {
		return udpSocket{}, fmt.Errorf("%d unconnected UDP sockets on port %d, want 1", len(found), port)
	}
	return found[0], nil
}

// waitRead waits until the daemon has read everything sent to its socket
// name on port so far, and returns the socket's drop count. Loopback may
// queue a datagram on the socket a moment after sendto returned (in the
// softirq that follows): the pause lets that happen before the queue is
// checked.
func waitRead(t *testing.T, name string, port int) uint64 {
	t.Helper()
	time.Sleep(20 * time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := kernelUDP(port)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.rxQueue == 0 {
			return s.drops
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (port %d): %d bytes left unread for 5s", name, port, s.rxQueue)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// garbageStatus is what the garbage test reads of a client's and the
// server's status.
type garbageStatus struct {
	ID         string   `json:"id"`
	Observed   string   `json:"observed"`
	Candidates []string `json:"candidates"`
	Relay      struct {
		Dropped int64 `json:"packets_dropped"`
		Clients []struct {
			ID   string `json:"id"`
			Addr string `json:"addr"`
		} `json:"clients"`
	} `json:"relay"`
}

func statusOf(t *testing.T, port int) garbageStatus {
	t.Helper()
	var st garbageStatus
	if err := getJSON(addr(port), &st); err != nil {
		t.Fatalf("status on %d: %v", port, err)
	}
	return st
}

// forged is an address no daemon has: a forged reflect reply or pong
// claims it.
var forged = netip.MustParseAddrPort("203.0.113.7:9")

// Every UDP socket of the three daemons (control's, the relay's, each
// client's direct and relay sockets) gets random datagrams, some shaped
// like QUIC long headers and relay frames, then well-formed probe and
// reflect datagrams that belong to nothing: pings and pongs of no punch
// attempt (a random nonce) between the clients' real IDs, and reflect
// replies to no request (a random transaction ID) claiming an address
// nobody has. The kernel's socket counters show every datagram arrived
// and was read; the relay counts the frames it dropped; afterwards both
// routes still carry traffic and no client believes the forged address.
func TestGarbageOnEveryPortLeavesTheDaemonsServing(t *testing.T) {
	tp := newTopology(t, endpoint{name: "d", srcRoute: "direct", dstRoute: "any"}, endpoint{name: "r", srcRoute: "relay", dstRoute: "any"})
	tp.start(t)
	dst, src, server := statusOf(t, tp.dstStatus), statusOf(t, tp.srcStatus), statusOf(t, tp.serverStatus)
	relaySocket := map[string]string{}
	for _, c := range server.Relay.Clients {
		relaySocket[c.ID] = c.Addr
	}
	targets := []struct {
		name string
		addr string
	}{
		{"control", addr(tp.serverPort)},
		{"relay", addr(tp.relayPort)},
		{"destination's direct socket", dst.Observed},
		{"source's direct socket", src.Observed},
		{"destination's relay socket", relaySocket[dst.ID]},
		{"source's relay socket", relaySocket[src.ID]},
	}
	var dstID, srcID identity.ID
	if err := errors.Join(dstID.UnmarshalText([]byte(dst.ID)), srcID.UnmarshalText([]byte(src.ID))); err != nil {
		t.Fatalf("client ids %q, %q: %v", dst.ID, src.ID, err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	frames := 0 // relay data frames sent to the relay
	for _, tg := range targets {
		ap, err := netip.ParseAddrPort(tg.addr)
		if err != nil {
			t.Fatalf("%s: address %q: %v", tg.name, tg.addr, err)
		}
		port := int(ap.Port())
		drops := waitRead(t, tg.name, port)
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port()))
		send := func(b []byte) {
			if _, err := conn.WriteToUDP(b, to); err != nil {
				t.Fatalf("%s: %v", tg.name, err)
			}
		}
		for i := range 600 {
			b := make([]byte, 1+rnd.IntN(1400))
			for j := range b {
				b[j] = byte(rnd.Uint32())
			}
			switch i % 3 {
			case 0:
				b[0] = 0xc0 | b[0]&0x0f // QUIC long header
			case 1:
				b[0] = wire.RelayFrameData
				if tg.name == "relay" && len(b) > wire.RelayFrameHeader {
					frames++
				}
			}
			send(b)
			if i%100 == 99 {
				waitRead(t, tg.name, port) // keep the socket's buffer from overflowing
			}
		}
		for range 20 {
			var nonce [wire.PunchNonceLen]byte
			var txID [wire.ReflectTxIDLen]byte
			for j := range nonce {
				nonce[j] = byte(rnd.Uint32())
			}
			for j := range txID {
				txID[j] = byte(rnd.Uint32())
			}
			for _, p := range []wire.Probe{
				{Nonce: nonce, From: srcID, To: dstID},
				{Nonce: nonce, From: dstID, To: srcID},
				{Pong: true, Nonce: nonce, From: srcID, To: dstID, Observed: forged},
				{Pong: true, Nonce: nonce, From: dstID, To: srcID, Observed: forged},
			} {
				send(wire.AppendProbe(nil, p))
			}
			send(wire.AppendReflect(nil, wire.Reflect{Reply: true, TxID: txID, Observed: forged}))
		}
		if now := waitRead(t, tg.name, port); now != drops {
			t.Fatalf("%s: the kernel dropped %d datagrams: not all of them reached the daemon", tg.name, now-drops)
		}
	}
	if d := statusOf(t, tp.serverStatus).Relay.Dropped - server.Relay.Dropped; d < int64(frames) {
		t.Fatalf("the relay counted %d frames dropped, want at least the %d sent it from no client", d, frames)
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
	for _, port := range []int{tp.dstStatus, tp.srcStatus} {
		st := statusOf(t, port)
		if strings.Contains(st.Observed, forged.Addr().String()) || slices.ContainsFunc(st.Candidates, func(c string) bool { return strings.Contains(c, forged.Addr().String()) }) {
			t.Errorf("client %s took up the forged address: observed %s, candidates %v", st.ID, st.Observed, st.Candidates)
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
