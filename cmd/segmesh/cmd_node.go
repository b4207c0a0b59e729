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
			switch {
			case r.Address != "" && r.AddressFreed:
				fmt.Fprintf(cmd.OutOrStdout(), "address %s is free: another node may take it\n", r.Address)
			case r.Address != "":
				fmt.Fprintf(cmd.OutOrStdout(), "address %s is kept: the node was seen alive within dead_peer_grace; run this again after it\n", r.Address)
			}
			return nil
		},
	})
	return cmd
}
