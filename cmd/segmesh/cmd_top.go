package main

import (
	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/tui"
)

func newTop(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "top",
		Short: "Live terminal view of segments, peers, policy, flows and the flow map",
		Long: `Show this node's daemon live in the terminal. Views (keys 1-5, Tab cycles):

  1 Segments  this node's workloads, then each segment's members and health
  2 Peers     address, segments, endpoint, handshake age, rx/tx rates, state
  3 Policy    the segment × segment matrix of allowed ports, and the rules
  4 Flows     denied and audited flows, newest first
  5 Map       the segment × segment matrix of observed flows (connections,
              coloured by the worst verdict: denied, audited, allowed)

` + tui.KeyHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src := tui.ClientSource(api.NewClient(g.socketPath()))
			return tui.Run(cmd.Context(), src, tui.Options{})
		},
	}
}
