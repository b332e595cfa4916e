package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/replds/replds/cluster"
	"github.com/replds/replds/store"
)

// httpServer serves the operations endpoints: /metrics (Prometheus text
// format), /healthz (process up, store open) and /readyz (joined and caught
// up with a peer, or alone by configuration). With TLS it serves HTTPS with
// the server's certificate and asks clients for a certificate of the
// cluster's CA (any identity: these endpoints carry no node data).
type httpServer struct {
	s   *Server
	lis net.Listener
	srv *http.Server
}

// newHTTPServer binds s.cfg.HTTPAddr. It serves nothing until serve.
func newHTTPServer(s *Server) (*httpServer, error) {
	lis, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("server: listen --http-addr %s: %w", s.cfg.HTTPAddr, err)
	}
	h := &httpServer{s: s, lis: lis}
	log := s.log.With("component", "http")
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h.requireCert(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})))
	healthz := http.Handler(http.HandlerFunc(h.healthz))
	if !s.cfg.HTTPHealthzNoCert {
		healthz = h.requireCert(healthz)
	}
	mux.Handle("GET /healthz", healthz)
	mux.Handle("GET /readyz", h.requireCert(http.HandlerFunc(h.readyz)))
	h.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if s.sec.tls != nil {
		cfg := s.sec.tls.ServerConfig()
		cfg.NextProtos = []string{"http/1.1"}
		if s.cfg.HTTPHealthzNoCert {
			// Verify a certificate when one is given, and let requireCert
			// refuse the paths that need one.
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
			get := cfg.GetConfigForClient
			cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				c, err := get(hello)
				if err != nil {
					return nil, err
				}
				c.ClientAuth = tls.VerifyClientCertIfGiven
				return c, nil
			}
		}
		h.lis = tls.NewListener(lis, cfg)
	}
	return h, nil
}

// addr returns the address the HTTP listener is bound to.
func (h *httpServer) addr() string { return h.lis.Addr().String() }

// serve serves until close; run it through goFunc.
func (h *httpServer) serve() {
	if err := h.srv.Serve(h.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		h.s.log.Error("http serve stopped", "err", err)
	}
}

// close stops the listener and waits (up to a few seconds) for requests in
// progress; a scrape is short.
func (h *httpServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		h.srv.Close()
	}
}

// requireCert refuses requests without a verified client certificate when
// TLS is on.
func (h *httpServer) requireCert(next http.Handler) http.Handler {
	if h.s.sec.tls == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "client certificate required", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// healthz answers 200 while the process runs and the store can be read.
func (h *httpServer) healthz(w http.ResponseWriter, r *http.Request) {
	// A read goes to bbolt: found or not found proves the database is open
	// and readable. The path is reserved: only a server could write it.
	if _, err := h.s.store.Get("/_replds/healthz"); err != nil && !errors.Is(err, store.ErrNotFound) {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 once the server is ready (see readiness), else 503
// with the reason.
func (h *httpServer) readyz(w http.ResponseWriter, r *http.Request) {
	ok, why := h.s.readiness()
	if !ok {
		http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready:", why)
}

// readiness reports whether the server should take traffic, and why. A
// server configured without peers is ready at once. One with peers is
// ready once another member is alive and a sync round with a peer has
// completed (it had everything that peer had); it stays ready after that,
// even alone, until it begins to shut down.
func (s *Server) readiness() (bool, string) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return false, "shutting down"
	}
	if len(s.cfg.Peers) == 0 {
		return true, "alone by configuration (no --peer)"
	}
	if s.caughtUp.Load() {
		return true, "joined and caught up with a peer"
	}
	if s.AliveMembers() < 2 {
		if je, ok := s.mem.LastJoinError(); ok {
			return false, "not joined: no other member alive; last join error: " + joinErrorText(je)
		}
		return false, "not joined: no other member alive"
	}
	return false, "joined, not yet caught up: no sync round with a peer has completed"
}

// joinErrorText describes a join failure for /readyz and Status.
func joinErrorText(je cluster.JoinError) string {
	return fmt.Sprintf("%s: %s (failing since %s)", je.Peer, je.Err, je.Since.UTC().Format(time.RFC3339))
}

// HTTPAddr returns the address of the operations HTTP listener, "" when
// Config.HTTPAddr is empty.
func (s *Server) HTTPAddr() string {
	if s.http == nil {
		return ""
	}
	return s.http.addr()
}

// Ready reports whether the server takes traffic (what /readyz says), and
// why.
func (s *Server) Ready() (bool, string) { return s.readiness() }

// DataDir returns the server's data directory.
func (s *Server) DataDir() string { return s.cfg.DataDir }
