package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// destinationsStatus is the part of a client's status this test reads.
type destinationsStatus struct {
	Destinations []struct {
		Name    string `json:"name"`
		Refused string `json:"refused"`
	} `json:"destinations"`
}

// refusals waits until the client at statusAddr lists want destinations,
// and returns the reason of each refused one by name ("" if announced).
func refusals(t *testing.T, statusAddr string, want int, settled func(map[string]string) bool) map[string]string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st destinationsStatus
		got := map[string]string{}
		if err := getJSON(statusAddr, &st); err == nil {
			for _, d := range st.Destinations {
				got[d.Name] = d.Refused
			}
			if len(got) == want && settled(got) {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("client status: destinations %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countRefused(m map[string]string) int {
	n := 0
	for _, r := range m {
		if r != "" {
			n++
		}
	}
	return n
}

// A server with max-endpoints-per-client = 2 takes two of a client's three
// destinations and refuses the third; the client shows which, and why. A
// reload that raises the limit lets the client's next session have all
// three.
func TestServerRefusesEndpointsBeyondItsLimit(t *testing.T) {
	tp := newTopology(t, endpoint{"a", "any", "any"}, endpoint{"b", "any", "any"}, endpoint{"c", "any", "any"})
	conf := filepath.Join(tp.dir, "server.toml")
	base, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, tp.dir, "server.toml", string(base)+"max-endpoints-per-client = 2\n")
	tp.startServer(t)
	dst := tp.connetd(t, "dst", "--config", "dst.toml")

	const why = "too many endpoints for this client: at most 2"
	// The order the client announces in is its own: any one may be
	// refused. Once control holds two and the client shows a refusal, all
	// three were answered.
	waitServerEndpoints(t, tp, 2)
	got := refusals(t, addr(tp.dstStatus), 3, func(m map[string]string) bool { return countRefused(m) > 0 })
	if n := countRefused(got); n != 1 {
		t.Fatalf("%d of 3 destinations refused, want 1: %v", n, got)
	}
	for name, r := range got {
		if r != "" && r != why {
			t.Fatalf("destination %s refused with %q, want %q", name, r, why)
		}
	}
	dst.waitLog(t, "control refused endpoint", 5*time.Second)
	dst.waitLog(t, why, 5*time.Second)
	tp.server.waitLog(t, "endpoint refused: "+why, 5*time.Second)

	writeFile(t, tp.dir, "server.toml", string(base)+"max-endpoints-per-client = 3\n")
	if err := tp.server.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	tp.server.waitLog(t, "configuration reloaded", 10*time.Second)
	// The client announces its refused endpoint again every 30 s, in the
	// same session: the room the reload made is taken without a restart.
	waitServerEndpointsWithin(t, tp, 3, 45*time.Second)
	refusals(t, addr(tp.dstStatus), 3, func(m map[string]string) bool { return countRefused(m) == 0 })
	if n := strings.Count(dst.out.String(), "connected to control"); n != 1 {
		t.Fatalf("the client connected to control %d times: the retry was not in its one session", n)
	}
	if n := strings.Count(tp.server.out.String(), "endpoint refused"); n != 1 {
		t.Fatalf("the server logged %d refusals, want the one before the reload", n)
	}
}

// waitServerEndpoints waits until the server's control holds one client
// with n endpoints.
func waitServerEndpoints(t *testing.T, tp *topology, n int) {
	t.Helper()
	waitServerEndpointsWithin(t, tp, n, 15*time.Second)
}

func waitServerEndpointsWithin(t *testing.T, tp *topology, n int, within time.Duration) {
	t.Helper()
	var st struct {
		Control struct {
			Clients []struct {
				Endpoints []string `json:"endpoints"`
			} `json:"clients"`
		} `json:"control"`
	}
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if getJSON(addr(tp.serverStatus), &st) == nil && len(st.Control.Clients) == 1 && len(st.Control.Clients[0].Endpoints) == n {
			return
		}
	}
	t.Fatalf("server status %+v, want one client with %d endpoints", st, n)
}
