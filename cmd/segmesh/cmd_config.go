package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/config"
)

// newConfigCmd is `segmesh config`: offline checks of a config file.
func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Validate a config file or print the commented default one",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(withExitStatus(&cobra.Command{
		Use:   "check",
		Short: "Validate the config file (-c) without starting: same checks and errors as `up`, exit 2 on error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := config.Load(g.configFile); err != nil {
				return err // a *config.Error: main exits 2
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		},
	}, "0\tthe config is valid (prints ok)", "2\tit is not, or cannot be read: FILE: KEY: reason"), &cobra.Command{
		Use:   "example",
		Short: "Print a commented config file listing every key at its default",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), config.Render(config.InitValues{
				Interface:      config.DefaultInterface,
				PrivateKeyFile: config.DefaultKeyFile,
				SecretFile:     config.DefaultSecretFile,
			}))
			return err
		},
	})
	return cmd
}
