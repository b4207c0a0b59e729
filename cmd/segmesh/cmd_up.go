package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/node"
)

func newUp(g *globals) *cobra.Command {
	return &cobra.Command{
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
			go func() {
				for {
					select {
					case <-hup:
						_ = n.Reload() // logged by Reload; the running state is kept on error
					case <-ctx.Done():
						return
					}
				}
			}()
			return n.Run(ctx)
		},
	}
}

func newLogger(cfg *config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
