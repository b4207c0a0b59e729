package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/config"
)

func newInit() *cobra.Command {
	var o config.InitOptions
	var tags, join string
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Write a config file, a WireGuard key and (if absent) a cluster key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Tags, err = config.ParseTags(tags); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--tags: %w", err)}
			}
			for _, j := range strings.Split(join, ",") {
				if j = strings.TrimSpace(j); j == "" {
					continue
				}
				hp, err := config.SplitHostPortDefault(j, config.DefaultGossipPort)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--join: %w", err)}
				}
				o.Join = append(o.Join, hp)
			}
			r, err := config.InitDir(o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "wrote %s\nwrote %s (0600), public key %s\n", r.ConfigFile, r.KeyFile, r.PublicKey)
			if r.ClusterKeyCreated {
				fmt.Fprintf(out, "wrote %s (0600): a NEW cluster key; copy this file to every node of the mesh\n", r.ClusterKeyFile)
			} else {
				fmt.Fprintf(out, "kept %s (the existing cluster key)\n", r.ClusterKeyFile)
			}
			fmt.Fprintf(out, "\nnext: review %s, then run:\n  segmesh up -c %s\n", r.ConfigFile, r.ConfigFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "directory to write into (required)")
	f.StringVar(&o.Name, "name", "", "node name (default: hostname)")
	f.StringVar(&tags, "tags", "", "tags as k=v,k=v")
	f.StringVar(&join, "join", "", "gossip seeds as host:port,host:port")
	f.StringVar(&o.Advertise, "advertise", "", "underlay address peers dial")
	f.StringVar(&o.Interface, "interface", "", "WireGuard interface name (default segmesh0)")
	f.BoolVar(&o.Force, "force", false, "overwrite an existing config and private key")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
