package main

import (
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/api"
)

func newStatus(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this node, its peers, segments, policy and trust mode",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := api.NewClient(g.socketPath()).Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			return api.FormatStatus(cmd.OutOrStdout(), s, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func newReload(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Re-read config, tags and keys (same as SIGHUP)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := api.NewClient(g.socketPath()).Reload(cmd.Context()); err != nil {
				return err
			}
			cmd.Println("reloaded")
			return nil
		},
	}
}
