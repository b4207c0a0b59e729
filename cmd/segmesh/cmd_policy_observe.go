package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/api"
)

func newPolicySuggest(g *globals) *cobra.Command {
	var full, fleet bool
	cmd := &cobra.Command{
		Use:   "suggest",
		Short: "Rules that would allow the observed denied/audited flows (YAML for rules:)",
		Long: `Propose rules that would allow the denied and audited flows this node
observed, or with --fleet every node's: one rule per pair of the segments
both ends are in (segment-level, not one per node pair), with the ports
seen. Flows that cannot be placed (an end in no segment) are named on
stderr ("not placed: ...").

` + fleetExit,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := api.NewClient(g.socketPath()).Suggest(cmd.Context(), fleet)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			from := "observed"
			if fleet {
				from = fmt.Sprintf("observed on %d node(s)", len(s.Nodes))
			}
			// e.g. "the 82 denied/audited flow(s) observed on 5 node(s)"
			switch {
			case full && s.Policy != "":
				fmt.Fprint(out, s.Policy)
			case s.Rules == "":
				fmt.Fprintf(out, "# nothing to suggest: the %d denied/audited flow(s) %s are allowed by policy v%d or cannot be placed\n", s.Flows, from, s.Version)
			default:
				fmt.Fprintf(out, "# rules allowing the %d denied/audited flow(s) %s under policy v%d; paste under rules:\n%s", s.Flows, from, s.Version, withNewline(s.Rules))
			}
			warnMissing(cmd.ErrOrStderr(), s.Missing)
			for _, u := range s.Unplaceable {
				fmt.Fprintf(cmd.ErrOrStderr(), "not placed: %s\n", u)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&full, "policy", false, "print the whole active policy with the suggested rules appended")
	cmd.Flags().BoolVar(&fleet, "fleet", false, fleetHelp)
	return cmd
}

func newPolicyDiff(g *globals) *cobra.Command {
	var fleet bool
	cmd := &cobra.Command{
		Use:   "diff FILE",
		Short: "Rule changes from the active policy to FILE and the observed flows FILE would newly deny",
		Long: `Show the rule changes from the active policy to FILE and the observed flows
that pass today (allowed, audited, live connections) FILE would newly deny:
this node's, or with --fleet every node's.

` + fleetExit,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			d, err := api.NewClient(g.socketPath()).Diff(cmd.Context(), string(data), fleet)
			if err != nil {
				return err
			}
			where := ""
			if fleet {
				where = fmt.Sprintf(" on %d node(s)", len(d.Nodes))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# active policy v%d -> %s (%d observed flows checked%s)\n%s", d.Version, args[0], d.Observed, where, d.Text)
			warnMissing(cmd.ErrOrStderr(), d.Missing)
			return nil
		},
	}
	cmd.Flags().BoolVar(&fleet, "fleet", false, fleetHelp)
	return cmd
}

// withNewline ends s with a newline (what follows on stderr starts a line).
func withNewline(s string) string {
	if s == "" || s[len(s)-1] == '\n' {
		return s
	}
	return s + "\n"
}
