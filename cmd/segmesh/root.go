package main

import (
	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/config"
)

// globals are the persistent flags.
type globals struct {
	configFile string
	socket     string
}

// socketPath resolves the control socket: --socket, else the config's
// control_socket, else the default.
func (g *globals) socketPath() string {
	if g.socket != "" {
		return g.socket
	}
	return config.ControlSocketOf(g.configFile)
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "segmesh",
		Short:         "Micro-segmentation over an encrypted WireGuard mesh formed by gossip",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&g.configFile, "config", "c", config.DefaultPath, "config file")
	root.PersistentFlags().StringVar(&g.socket, "socket", "", "control socket (default: the config's control_socket)")
	root.AddCommand(newInit(), newUp(g), newStatus(g), newFlows(g), newMap(g), newTop(g), newReload(g), newPolicy(g),
		newNode(g), newQuarantine(g), newRelease(g), newCA(), newCert(g), newVersion(), newConfigCmd(g))
	for _, extra := range buildCommands {
		root.AddCommand(extra())
	}
	return root
}

// buildCommands are commands only some builds carry (see cmd_man.go).
var buildCommands []func() *cobra.Command
