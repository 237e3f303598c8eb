package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/connetd/connetd/internal/testenv"
)

// withMetrics adds metrics-addr to the role table of a config file the
// topology wrote.
func withMetrics(t *testing.T, dir, file, table string, port int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	head := "[" + table + "]\n"
	if !bytes.Contains(b, []byte(head)) {
		t.Fatalf("%s has no %s", file, head)
	}
	b = bytes.Replace(b, []byte(head), fmt.Appendf(nil, "%smetrics-addr = %q\n", head, addr(port)), 1)
	writeFile(t, dir, file, string(b))
}

// scrape returns the body and Content-Type of GET /metrics with accept.
func scrape(t *testing.T, port int, accept string) (string, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr(port)+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("scrape %d: %v", port, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %d: %s %v\n%s", port, resp.Status, err, body)
	}
	return string(body), resp.Header.Get("Content-Type")
}

// parseMetrics parses the text format and checks it with promtool.
func parseMetrics(t *testing.T, promtool, text string) map[string]*dto.MetricFamily {
	t.Helper()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return mfs
}

// sum adds the values of family's series whose labels include want.
func sum(mfs map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	var n float64
	mf := mfs[family]
	if mf == nil {
		return 0
	}
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return n
}

// The source client's byte counters grow by the bytes sent on the path the
// route takes, and the server's relay counts the relayed ones; every scrape
// passes promtool.
func TestMetricsCountBytesByPath(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool", "prometheus")
	tp := newTopology(t,
		endpoint{name: "viaDirect", srcRoute: "direct", dstRoute: "any"},
		endpoint{name: "viaRelay", srcRoute: "any", dstRoute: "relay"},
	)
	srcMetrics, serverMetrics := freePort(t), freePort(t)
	withMetrics(t, tp.dir, "src.toml", "client", srcMetrics)
	withMetrics(t, tp.dir, "server.toml", "server", serverMetrics)
	tp.start(t)

	const n = 1 << 20
	payload := make([]byte, n)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ endpoint, path, other string }{
		{"viaDirect", "direct", "relay"},
		{"viaRelay", "relay", "direct"},
	} {
		text, _ := scrape(t, srcMetrics, "")
		before := parseMetrics(t, promtool, text)
		stext, _ := scrape(t, serverMetrics, "")
		sBefore := parseMetrics(t, promtool, stext)
		relayBefore := sum(sBefore, "connetd_relay_bytes_total", map[string]string{"endpoint": tc.endpoint})
		pairsBefore := sum(sBefore, "connetd_relay_pair_bytes_total", nil)

		got, err := echoRoundTrip(tp.srcAddr(tc.endpoint), payload)
		if err != nil || len(got) != n {
			t.Fatalf("%s: %v (got %d of %d bytes)", tc.endpoint, err, len(got), n)
		}

		text, _ = scrape(t, srcMetrics, "")
		after := parseMetrics(t, promtool, text)
		for _, dir := range []string{"in", "out"} {
			on := map[string]string{"endpoint": tc.endpoint, "kind": "source", "path": tc.path, "direction": dir}
			if d := sum(after, "connetd_client_bytes_total", on) - sum(before, "connetd_client_bytes_total", on); d < n {
				t.Errorf("%s: connetd_client_bytes_total{path=%q,direction=%q} grew by %.0f, want at least %d\n%s", tc.endpoint, tc.path, dir, d, n, text)
			}
			off := map[string]string{"endpoint": tc.endpoint, "kind": "source", "path": tc.other, "direction": dir}
			if d := sum(after, "connetd_client_bytes_total", off) - sum(before, "connetd_client_bytes_total", off); d != 0 {
				t.Errorf("%s: connetd_client_bytes_total{path=%q,direction=%q} grew by %.0f, want 0", tc.endpoint, tc.other, dir, d)
			}
		}
		if got := sum(after, "connetd_client_peer_path", map[string]string{"endpoint": tc.endpoint, "path": tc.path}); got != 1 {
			t.Errorf("%s: connetd_client_peer_path{path=%q} = %v, want 1", tc.endpoint, tc.path, got)
		}
		if rtt := sum(after, "connetd_client_peer_rtt_seconds", map[string]string{"endpoint": tc.endpoint, "path": tc.path}); rtt <= 0 || rtt > 1 {
			t.Errorf("%s: connetd_client_peer_rtt_seconds{path=%q} = %v, want a loopback RTT", tc.endpoint, tc.path, rtt)
		}

		stext, _ = scrape(t, serverMetrics, "")
		smfs := parseMetrics(t, promtool, stext)
		relayed := sum(smfs, "connetd_relay_bytes_total", map[string]string{"endpoint": tc.endpoint}) - relayBefore
		pairs := sum(smfs, "connetd_relay_pair_bytes_total", nil) - pairsBefore
		switch tc.path {
		case "relay":
			if relayed < 2*n || pairs < 2*n { // both directions
				t.Errorf("relay route: connetd_relay_bytes_total grew by %.0f, connetd_relay_pair_bytes_total by %.0f, want at least %d each\n%s", relayed, pairs, 2*n, stext)
			}
			// Every relayed datagram was read in some batch.
			hist := func(mfs map[string]*dto.MetricFamily) float64 {
				if mf := mfs["connetd_relay_read_batch_datagrams"]; mf != nil && len(mf.GetMetric()) == 1 {
					return mf.GetMetric()[0].GetHistogram().GetSampleSum()
				}
				return 0
			}
			if read := hist(smfs) - hist(sBefore); read < float64(2*n)/1500 {
				t.Errorf("relay route: connetd_relay_read_batch_datagrams counted %.0f datagrams read for %d bytes each way", read, n)
			}
		case "direct":
			if relayed != 0 {
				t.Errorf("direct route: connetd_relay_bytes_total{endpoint=%q} grew by %.0f, want 0", tc.endpoint, relayed)
			}
		}
		// The topology's two tokens: dst's first, src's second.
		for _, idx := range []string{"0", "1"} {
			if got := sum(smfs, "connetd_control_token_clients", map[string]string{"token_index": idx}); got != 1 {
				t.Errorf("server: connetd_control_token_clients{token_index=%q} = %v, want 1", idx, got)
			}
		}
		if sum(smfs, "connetd_control_clients", nil) != 2 || sum(smfs, "connetd_relay_clients", nil) < 1 {
			t.Errorf("server: control clients %v, relay clients %v; want 2 and at least 1",
				sum(smfs, "connetd_control_clients", nil), sum(smfs, "connetd_relay_clients", nil))
		}
	}
	final, _ := scrape(t, srcMetrics, "")
	mfs := parseMetrics(t, promtool, final)
	if sum(mfs, "connetd_client_control_connected", nil) != 1 {
		t.Errorf("connetd_client_control_connected is not 1")
	}
	// Both paths came up (the relay one may also have come before the
	// direct one for viaDirect's peer) and none was lost.
	for reason, want := range map[string][2]float64{"direct_up": {1, 100}, "relay_up": {1, 100}, "direct_lost": {0, 0}, "network_change": {0, 0}} {
		if got := sum(mfs, "connetd_client_path_changes_total", map[string]string{"reason": reason}); got < want[0] || got > want[1] {
			t.Errorf("connetd_client_path_changes_total{reason=%q} = %v, want %v to %v", reason, got, want[0], want[1])
		}
	}
	if got := sum(mfs, "connetd_udp_buffer_bytes", map[string]string{"socket": "direct", "direction": "receive"}); got <= 0 {
		t.Errorf("connetd_udp_buffer_bytes{socket=\"direct\",direction=\"receive\"} = %v, want the socket's size", got)
	}
	if pm := mfs["connetd_client_port_mapping"]; pm == nil || len(pm.GetMetric()) != 3 || sum(mfs, "connetd_client_port_mapping", nil) > 1 {
		t.Errorf("connetd_client_port_mapping: want one series per protocol, at most one of them 1")
	}
	// viaDirect's peer had its first direct path: one time to direct, on
	// loopback well within a minute.
	if ttd := mfs["connetd_client_time_to_direct_seconds"]; ttd == nil || len(ttd.GetMetric()) != 1 {
		t.Errorf("no connetd_client_time_to_direct_seconds histogram")
	} else if h := ttd.GetMetric()[0].GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() <= 0 || h.GetSampleSum() > 60 {
		t.Errorf("connetd_client_time_to_direct_seconds: count %d, sum %v; want 1 observation under a minute", h.GetSampleCount(), h.GetSampleSum())
	}
	// viaDirect's path came from a punch, which the outcomes count.
	if got := sum(mfs, "connetd_client_punch_outcomes_total", map[string]string{"outcome": "direct"}); got < 1 {
		t.Errorf("connetd_client_punch_outcomes_total{outcome=\"direct\"} = %v, want at least 1\n%s", got, final)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "connetd_build_info"} {
		if mfs[name] == nil {
			t.Errorf("no %s in the scrape", name)
		}
	}
}

// A scraper that asks for OpenMetrics gets it; one that does not gets the
// text format.
func TestMetricsNegotiateOpenMetrics(t *testing.T) {
	tp := newTopology(t, endpoint{name: "web", srcRoute: "any", dstRoute: "any"})
	srcMetrics := freePort(t)
	withMetrics(t, tp.dir, "src.toml", "client", srcMetrics)
	tp.start(t)
	body, ct := scrape(t, srcMetrics, "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	if !strings.HasPrefix(ct, "application/openmetrics-text") || !strings.HasSuffix(strings.TrimSpace(body), "# EOF") {
		t.Errorf("Accept: openmetrics gave Content-Type %q, body ending %q", ct, body[max(0, len(body)-40):])
	}
	if _, ct = scrape(t, srcMetrics, ""); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("no Accept gave Content-Type %q, want text/plain", ct)
	}
}

// A standalone control and relay serve their metrics too, configured by
// flag: control counts the linked relay, and both scrapes pass promtool.
func TestMetricsOfStandaloneControlAndRelay(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool", "prometheus")
	tp := newTopology(t)
	clients, relays, relayPort := freePort(t), freePort(t), freePort(t)
	ctlMetrics, relayMetrics := freePort(t), freePort(t)
	tp.connetd(t, "control", "control", "--cert-file", "cert.pem", "--key-file", "key.pem",
		"--clients-addr", addr(clients), "--relays-addr", addr(relays), "--clients-tokens", "client-token",
		"--relays-tokens", "relay-token", "--metrics-addr", addr(ctlMetrics))
	tp.connetd(t, "relay", "relay", "--token", "relay-token", "--addr", addr(relayPort), "--hostname", "127.0.0.1",
		"--control-addr", addr(relays), "--control-cas", "cert.pem", "--metrics-addr", addr(relayMetrics))

	deadline := time.Now().Add(15 * time.Second)
	for {
		text, _ := scrapeOnce(ctlMetrics)
		if strings.Contains(text, "\nconnetd_control_relays 1\n") {
			mfs := parseMetrics(t, promtool, text)
			if mfs["connetd_control_refusals_total"] == nil || mfs["connetd_relay_clients"] != nil {
				t.Errorf("control: want refusals and no relay metrics:\n%s", text)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("control never reported its relay; last scrape:\n%s", text)
		}
		time.Sleep(100 * time.Millisecond)
	}
	text, _ := scrape(t, relayMetrics, "")
	mfs := parseMetrics(t, promtool, text)
	for _, name := range []string{"connetd_relay_clients", "connetd_relay_packets_dropped_total", "connetd_relay_packets_forwarded_total"} {
		if mfs[name] == nil {
			t.Errorf("relay: no %s in\n%s", name, text)
		}
	}
	if mfs["connetd_control_clients"] != nil {
		t.Errorf("relay: has control metrics:\n%s", text)
	}
}

// scrapeOnce is scrape for polling: errors are an empty answer.
func scrapeOnce(port int) (string, error) {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + addr(port) + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
