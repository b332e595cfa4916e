package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/replds/replds/watcher"
)

// instrumentPull gives the pull's watcher configuration metrics (its
// triggers wrapped, its Watch streams observed) and serves them on addr
// until stop is called.
func instrumentPull(cfg *watcher.Config, addr string, log *slog.Logger) (stop func(), err error) {
	m := watcher.NewMetrics()
	cfg.Metrics = m
	cfg.Follow.DialOptions = append(cfg.Follow.DialOptions, m.DialOption())
	cfg.Triggers = m.Triggers(cfg.Triggers)
	return serveMetrics(addr, m.Registry(), log)
}

// serveMetrics serves /metrics of reg and /healthz on addr (plain HTTP:
// bind it to a local address) until stop is called; stop waits for the
// server to end.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	log.Info("http serving", "addr", lis.Addr().String(), "paths", "/metrics /healthz")
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http serve stopped", "err", err)
		}
	})
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		wg.Wait()
	}, nil
}
