package main

import (
	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/tui"
)

func newTop(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "top",
		Short: "Live terminal view of segments, peers, policy and flows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src := tui.ClientSource(api.NewClient(g.socketPath()))
			return tui.Run(cmd.Context(), src, tui.Options{})
		},
	}
}
