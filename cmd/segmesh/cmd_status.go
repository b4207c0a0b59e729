package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/api"
)

func newStatus(g *globals) *cobra.Command {
	var asJSON bool
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this node, its peers, segments, policy and trust mode",
		Long: `Show this node, the nodes in quarantine, this node's workloads, its peers
and their workloads. The text fits 80 columns: the peer table has NAME,
STATE, ADDRESS, ENDPOINT, SEGMENTS and HANDSHAKE, a peer's reason on a line
below it, and values too wide are cut with "…" (a last line says so).
-o wide shows everything: ADDRESS6, TAGS, RX, TX, RX/s, TX/s and REASON
columns too, nothing cut. -o json (or --json) is the machine-readable form.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "", "wide":
			case "json":
				asJSON = true
			default:
				return &exitError{code: 2, err: fmt.Errorf("--output %q: want wide or json", output)}
			}
			s, err := api.NewClient(g.socketPath()).Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			if output == "wide" {
				return api.FormatStatusWide(cmd.OutOrStdout(), s, time.Now())
			}
			return api.FormatStatus(cmd.OutOrStdout(), s, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: wide (every column, nothing cut to 80 columns) or json")
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
