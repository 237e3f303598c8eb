// Package metrics serves a role's state as Prometheus metrics on
// metrics-addr. The values are read from the role's status at each scrape,
// so the data path carries no metrics code of its own.
package metrics

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/connetd/connetd/statushttp"
)

const (
	textContentType        = "text/plain; version=0.0.4; charset=utf-8"
	openMetricsContentType = "application/openmetrics-text; version=1.0.0; charset=utf-8"
)

// gather writes one scrape of state, the Go runtime and the process to w.
func gather(w io.Writer, state func() State, openMetrics bool, log *slog.Logger) error {
	s := newSink()
	collect(s, state())
	collectRuntime(s)
	if err := collectProcess(s); err != nil {
		// Debug: a scraper that keeps scraping would fill the journal.
		log.Debug("metrics: " + err.Error())
	}
	if s.duplicates > 0 {
		log.Debug("metrics: duplicate series dropped", "count", s.duplicates)
	}
	return s.write(w, openMetrics)
}

// Handler answers GET with a scrape: OpenMetrics when the scraper prefers
// it in Accept, as Prometheus does, else the text format.
func Handler(state func() State, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		om := wantsOpenMetrics(r.Header.Get("Accept"))
		// Whole before the first byte: a scrape cut short would parse as
		// one with series missing.
		var buf bytes.Buffer
		if err := gather(&buf, state, om, log); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ct := textContentType
		if om {
			ct = openMetricsContentType
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		if _, err := w.Write(buf.Bytes()); err != nil {
			log.Debug("metrics: write scrape", "err", err)
		}
	})
}

// wantsOpenMetrics tells whether OpenMetrics 1.0.0 (or an unversioned
// one) has a higher q in accept than the text format; on a tie, the one
// listed first wins, as in client_golang's negotiation.
func wantsOpenMetrics(accept string) bool {
	bestQ, om := -1.0, false
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		isOM := mt == "application/openmetrics-text" && (params["version"] == "" || params["version"] == "1.0.0" || params["version"] == "0.0.1")
		isText := mt == "text/plain" || mt == "text/*" || mt == "*/*"
		if (isOM || isText) && q > bestQ {
			bestQ, om = q, isOM
		}
	}
	return om
}

// Serve answers GET /metrics with state until ctx ends. ln is an
// already-bound listener (socket activation) or nil to bind addr.
func Serve(ctx context.Context, ln net.Listener, addr string, state func() State, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(state, log))
	return statushttp.ServeHandler(ctx, ln, addr, "metrics", mux, log)
}
