// Package metrics serves a role's state as Prometheus metrics on
// metrics-addr. The values are read from the role's status at each scrape
// (a Collector), so the data path carries no metrics code of its own.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/connetd/connetd/statushttp"
)

// NewRegistry is the registry of one daemon: its state as read by state at
// each scrape, and the Go runtime and process collectors. A registry per
// daemon, not the global one, so tests can run several in one process.
func NewRegistry(state func() State) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&collector{state: state},
	)
	return reg
}

// Serve answers GET /metrics from reg until ctx ends. ln is an
// already-bound listener (socket activation) or nil to bind addr.
func Serve(ctx context.Context, ln net.Listener, addr string, reg *prometheus.Registry, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// OpenMetrics only when the scraper asks for it in Accept.
		EnableOpenMetrics: true,
		ErrorLog:          slogPrinter{log},
		// A bad collector should show in the scrape, not end it.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	return statushttp.ServeHandler(ctx, ln, addr, "metrics", mux, log)
}

// slogPrinter is promhttp's error log: gathering errors at debug, since a
// scraper that keeps failing would otherwise fill the journal.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Debug("metrics: " + fmt.Sprint(v...)) }
