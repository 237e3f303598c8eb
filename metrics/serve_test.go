package metrics

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Serve answers until its context ends and then returns, its listener
// closed: the daemon's errgroup waits for it.
func TestServeAnswersAndStopsWithItsContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, "", fullState, slog.New(slog.DiscardHandler)) }()

	url := "http://" + ln.Addr().String() + "/metrics"
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "application/openmetrics-text")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") || !strings.Contains(string(body), "connetd_relay_clients 2") {
		t.Fatalf("Content-Type %q, body:\n%s", ct, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("the listener still accepts after Serve returned")
	}
}

// Without an Accept asking for OpenMetrics, a scrape is the text format.
func TestHandlerServesTextFormat(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler(fullState, slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if ct := rec.Header().Get("Content-Type"); rec.Code != http.StatusOK || ct != "text/plain; version=0.0.4; charset=utf-8" ||
		!strings.Contains(body, "\nconnetd_relay_clients 2\n") || strings.Contains(body, "# EOF") {
		t.Fatalf("%d, Content-Type %q, body:\n%s", rec.Code, ct, body)
	}
}

func TestWantsOpenMetrics(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                             false,
		"text/plain;version=0.0.4":     false,
		"application/openmetrics-text": true,
		"*/*":                          false,
		"application/json":             false,
		"application/openmetrics-text;version=2.0.0": false,
		// Prometheus's own header.
		"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1": true,
		"text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5":                                                                     false,
		"text/plain,application/openmetrics-text":                                                                                               false,
	} {
		if got := wantsOpenMetrics(accept); got != want {
			t.Errorf("%q: OpenMetrics %v, want %v", accept, got, want)
		}
	}
}
