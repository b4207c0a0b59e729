package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/internal/sdnotify"
	"github.com/segmesh/segmesh/node"
)

func newUp(g *globals) *cobra.Command {
	return withExitStatus(&cobra.Command{
		Use:   "up",
		Short: "Run the daemon in the foreground (SIGTERM leaves the mesh, SIGHUP reloads)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(g.configFile)
			if err != nil {
				return err
			}
			log := newLogger(cfg)
			log.Info("garbage collector", "settings", node.TuneMemory(os.LookupEnv).String())
			n, err := node.New(cfg, log, node.RealDeps(), version)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			sd := serviceManager{sdnotify.New(os.Getenv), log}
			go func() {
				ready := make(chan error, 1)
				go func() { ready <- n.WaitReady(ctx) }() // ends with ctx at the latest
				enforcing := false
				for {
					select {
					case err := <-ready:
						if err == nil {
							enforcing = true
							sd.notify("READY=1", "STATUS=enforcing")
						}
					case <-hup:
						sd.notify("RELOADING=1", sdnotify.MonotonicUsec())
						_ = n.Reload() // logged by Reload; the running state is kept on error
						if enforcing {
							sd.notify("READY=1")
						}
					case <-ctx.Done():
						sd.notify("STOPPING=1")
						return
					}
				}
			}()
			return n.Run(ctx)
		},
	}, "0\tstopped by SIGTERM or SIGINT after leaving the mesh",
		"1\ta runtime failure (the packaged unit restarts the daemon)",
		"2\tan invalid configuration, the same as `segmesh config check` reports (the packaged unit does not restart it: RestartPreventExitStatus=2)")
}

// serviceManager tells systemd (Type=notify) when the daemon enforces,
// reloads and stops; outside systemd it does nothing.
type serviceManager struct {
	n   sdnotify.Notifier
	log *slog.Logger
}

func (s serviceManager) notify(assignments ...string) {
	if err := s.n.Notify(assignments...); err != nil {
		s.log.Warn("cannot notify the service manager", "err", err)
	}
}

func newLogger(cfg *config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
