package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/api"
)

func newPolicySuggest(g *globals) *cobra.Command {
	var full, fleet, auditOnly bool
	cmd := &cobra.Command{
		Use:   "suggest",
		Short: "Rules that would allow the observed denied/audited flows (YAML for rules:)",
		Long: `Propose rules that would allow the denied and audited flows this node
observed, or with --fleet every node's: one rule per pair of the segments
both ends are in (segment-level, not one per node pair), with the ports
seen. Flows that cannot be placed (an end in no segment) are named on
stderr ("not placed: ...").

Denied flows are the ones enforce mode dropped: traffic nobody has seen
work, e.g. a deliberately denied probe. A rule from them has a comment
above it, "# from denied flows (enforce mode): check they are wanted" (with
the ports in front when only some of its ports are from denied flows), and
the header says how many flows were denied. --from-audit-only leaves denied
flows out (audited flows, which passed in audit mode, only) and says on
stderr how many it left out. The output stays valid YAML: paste it under
rules:, or use --policy.

` + fleetExit,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := api.NewClient(g.socketPath()).Suggest(cmd.Context(), fleet, auditOnly)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			from := "observed"
			if fleet {
				from = fmt.Sprintf("observed on %d node(s)", len(s.Nodes))
			}
			kinds := "denied/audited"
			if auditOnly {
				kinds = "audited"
			}
			// e.g. "the 82 denied/audited flow(s) observed on 5 node(s)"
			switch {
			case full && s.Policy != "":
				fmt.Fprint(out, s.Policy)
			case s.Rules == "":
				fmt.Fprintf(out, "# nothing to suggest: the %d %s flow(s) %s are allowed by policy v%d or cannot be placed\n", s.Flows, kinds, from, s.Version)
			default:
				fmt.Fprintf(out, "# rules allowing the %d %s flow(s) %s under policy v%d; paste under rules:\n", s.Flows, kinds, from, s.Version)
				if s.Denied > 0 {
					fmt.Fprintf(out, "# %d of them denied (enforce mode): rules marked so let in what is dropped today; --from-audit-only leaves them out\n", s.Denied)
				}
				fmt.Fprint(out, withNewline(s.Rules))
			}
			warnMissing(cmd.ErrOrStderr(), s.Missing)
			for _, u := range s.Unplaceable {
				fmt.Fprintf(cmd.ErrOrStderr(), "not placed: %s\n", u)
			}
			if s.LeftOut > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "left out: %d denied flow(s) (enforce mode; --from-audit-only)\n", s.LeftOut)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&full, "policy", false, "print the whole active policy with the suggested rules appended")
	cmd.Flags().BoolVar(&fleet, "fleet", false, fleetHelp)
	cmd.Flags().BoolVar(&auditOnly, "from-audit-only", false, "only from audited flows: leave out those enforce mode denied")
	return withExitStatus(cmd, exitFleetOK, exitFailed, exitUsage)
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
	return withExitStatus(cmd, exitFleetOK, exitFailed, exitUsage)
}

// withNewline ends s with a newline (what follows on stderr starts a line).
func withNewline(s string) string {
	if s == "" || s[len(s)-1] == '\n' {
		return s
	}
	return s + "\n"
}
