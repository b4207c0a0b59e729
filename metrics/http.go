package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves:
//
//   - GET /metrics: the registry in the Prometheus exposition formats (a
//     collector error leaves its metrics out and is counted in
//     promhttp_metric_handler_errors_total rather than failing the scrape);
//   - GET /healthz: 200 "ok" while the process serves HTTP;
//   - GET /readyz: 200 "ok" when ready() returns nil, else 503 with the
//     error's text (ready nil: always ready).
//
// Other paths are 404, other methods 405.
func Handler(reg *prometheus.Registry, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				text(w, http.StatusServiceUnavailable, err.Error())
				return
			}
		}
		text(w, http.StatusOK, "ok")
	})
	return mux
}

func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// shutdownTimeout bounds the graceful shutdown: requests still running
// after it are cut.
const shutdownTimeout = 5 * time.Second

// Server is an HTTP server started by Listen.
type Server struct {
	addr string
	done chan struct{}
	err  error // set before done is closed
}

// Listen listens on addr (host:port; port 0 picks a free one) and serves h
// in a goroutine until ctx is done, then shuts down gracefully (in-flight
// requests get up to 5 s). A listen error is returned at once. Wait waits
// for the shutdown.
func Listen(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s := &Server{addr: ln.Addr().String(), done: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	go func() {
		defer close(s.done)
		select {
		case err := <-served: // failed on its own
			_ = srv.Close()
			s.err = fmt.Errorf("metrics: serve on %s: %w", s.addr, err)
			return
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
			log.Warn("metrics server did not shut down in time; connections closed", "addr", s.addr, "err", err)
		}
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = fmt.Errorf("metrics: serve on %s: %w", s.addr, err)
		}
	}()
	log.Info("metrics listening", "addr", s.addr)
	return s, nil
}

// Addr is the address the server listens on (with the actual port).
func (s *Server) Addr() string { return s.addr }

// Wait blocks until the server has stopped (its context is done and the
// shutdown finished, or serving failed) and returns the serving error, nil
// after a clean shutdown.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Serve listens on addr (e.g. 127.0.0.1:9476) and serves h until ctx is
// done, then shuts down gracefully; see Listen. A listen error is returned
// at once; otherwise Serve returns when the server has stopped.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	s, err := Listen(ctx, addr, h, log)
	if err != nil {
		return err
	}
	return s.Wait()
}
