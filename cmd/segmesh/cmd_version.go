package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/mesh"
)

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit, Go version and WireGuard backend",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			backend := "wireguard-go (embedded, userspace)"
			if mesh.KernelSupported() {
				backend = "kernel"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "segmesh %s\ncommit %s\n%s\nwireguard backend: %s\n", version, commit, runtime.Version(), backend)
		},
	}
}
