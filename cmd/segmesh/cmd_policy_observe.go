package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/api"
)

func newPolicySuggest(g *globals) *cobra.Command {
	var full bool
	cmd := &cobra.Command{
		Use:   "suggest",
		Short: "Rules that would allow the observed denied/audited flows (YAML for rules:)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := api.NewClient(g.socketPath()).Suggest(cmd.Context(), false)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case full && s.Policy != "":
				fmt.Fprint(out, s.Policy)
			case s.Rules == "":
				fmt.Fprintf(out, "# nothing to suggest: the %d observed flow(s) are allowed by policy v%d or cannot be placed\n", s.Flows, s.Version)
			default:
				fmt.Fprintf(out, "# rules allowing the %d observed denied/audited flow(s) under policy v%d; paste under rules:\n%s", s.Flows, s.Version, s.Rules)
			}
			for _, u := range s.Unplaceable {
				fmt.Fprintf(cmd.ErrOrStderr(), "not placed: %s\n", u)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&full, "policy", false, "print the whole active policy with the suggested rules appended")
	return cmd
}

func newPolicyDiff(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff FILE",
		Short: "Rule changes from the active policy to FILE and the observed flows FILE would newly deny",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			d, err := api.NewClient(g.socketPath()).Diff(cmd.Context(), string(data), false)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# active policy v%d -> %s (%d observed flows checked)\n%s", d.Version, args[0], d.Observed, d.Text)
			return nil
		},
	}
}
