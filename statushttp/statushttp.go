// Package statushttp serves a role's status as JSON on status-addr.
package statushttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Serve answers GET / and GET /status with the JSON of status() until ctx
// ends. ln is an already-bound listener (socket activation) or nil to bind addr.
func Serve(ctx context.Context, ln net.Listener, addr string, status func() any, log *slog.Logger) error {
	mux := http.NewServeMux()
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(status()); err != nil {
			log.Debug("write status", "err", err)
		}
	}
	mux.HandleFunc("GET /{$}", h)
	mux.HandleFunc("GET /status", h)
	return ServeHandler(ctx, ln, addr, "status", mux, log)
}

// ServeHandler serves h on ln (or, if nil, on addr) until ctx ends, then
// shuts the server down; what names the endpoint in logs and errors. The
// metrics endpoint shares it.
func ServeHandler(ctx context.Context, ln net.Listener, addr, what string, h http.Handler, log *slog.Logger) error {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("listen %s %s: %w", what, addr, err)
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Info(what+" listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve %s: %w", what, err)
	}
}
