package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/config"
)

// globals are the persistent flags.
type globals struct {
	configFile string
	socket     string
}

// configEnv names the config file when --config is not given.
const configEnv = "SEGMESH_CONFIG"

// socketPath resolves the control socket: --socket, else the config's
// control_socket (with its SEGMESH_CONTROL_SOCKET override), else the
// default.
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
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		// $SEGMESH_CONFIG stands for a --config not given (the help keeps
		// the built-in default, as do the man pages built from it).
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			if f := cmd.Flags().Lookup("config"); f != nil && !f.Changed {
				if env := os.Getenv(configEnv); env != "" {
					g.configFile = env
				}
			}
		},
	}
	root.PersistentFlags().StringVarP(&g.configFile, "config", "c", config.DefaultPath, "config file (if not given: $"+configEnv+", else the default)")
	root.PersistentFlags().StringVar(&g.socket, "socket", "", "control socket (default: $SEGMESH_CONTROL_SOCKET, else the config's control_socket)")
	root.AddCommand(newInit(), newUp(g), newStatus(g), newFlows(g), newMap(g), newTop(g), newReload(g), newPolicy(g),
		newNode(g), newQuarantine(g), newRelease(g), newCA(), newCert(g), newVersion(), newConfigCmd(g))
	for _, extra := range buildCommands {
		root.AddCommand(extra())
	}
	return root
}

// buildCommands are commands only some builds carry (see cmd_man.go).
var buildCommands []func() *cobra.Command
