package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/api"
)

func newNode(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Operate on mesh members"}
	cmd.AddCommand(&cobra.Command{
		Use:   "remove NAME|KEY|ADDRESS",
		Short: "Force-remove a dead or departed node everywhere and prune it from peer caches",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := api.NewClient(g.socketPath()).RemoveNode(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s (%s) from the mesh\n", r.Name, r.PublicKey)
			return nil
		},
	})
	return cmd
}
