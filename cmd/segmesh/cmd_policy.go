package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
)

func newPolicy(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Check, apply, show and explain segment policies"}
	cmd.AddCommand(newPolicyCheck(), newPolicyApply(g), newPolicySign(), newPolicyShow(g), newPolicyHistory(g),
		newPolicyExplain(g), newPolicySuggest(g), newPolicyDiff(g))
	return cmd
}

// checkFile parses a policy file and runs its tests; every problem is
// returned as one error of file:line:col lines.
func checkFile(path string) ([]byte, *acl.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	p, err := acl.Parse(path, data)
	if err != nil {
		return nil, nil, err
	}
	if fails := p.RunTests(); len(fails) > 0 {
		lines := make([]string, len(fails))
		for i, f := range fails {
			lines[i] = f.Format(path)
		}
		return nil, nil, fmt.Errorf("%d policy test(s) failed:\n%s", len(fails), strings.Join(lines, "\n"))
	}
	return data, p, nil
}

func newPolicyCheck() *cobra.Command {
	return withExitStatus(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy and run its tests offline (exit 1 with file:line:col on error)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, p, err := checkFile(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s mode, %d segments, %d rules, %d tests passed)\n",
				args[0], p.Mode, len(p.Segments), len(p.Rules), len(p.Tests))
			return nil
		},
	}, "0\tthe policy is valid and all its tests pass",
		"1\tit is not, or a test fails, or it cannot be read: FILE:LINE:COL: reason", exitUsage)
}

func newPolicyApply(g *globals) *cobra.Command {
	var expect int64
	var signKey string
	cmd := &cobra.Command{
		Use:   "apply FILE",
		Short: "Check a policy, hand it to the local daemon, wait until it is active here",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, _, err := checkFile(args[0])
			if err != nil {
				return err
			}
			content, sig, err := ca.SplitSignedPolicy(data)
			if err != nil {
				return err
			}
			client := api.NewClient(g.socketPath())
			req := api.ApplyRequest{Content: string(content)}
			if sig != nil { // `policy sign` output: the version is inside the signature
				req.Version, req.Signature = sig.Version, sig.Sig
			}
			if cmd.Flags().Changed("expect-version") {
				if expect < 0 {
					return &exitError{code: 2, err: fmt.Errorf("--expect-version must be >= 0")}
				}
				v := uint64(expect)
				req.ExpectVersion = &v
			}
			if signKey != "" {
				if req.Version, req.Signature, err = signForApply(cmd, client, signKey, content, req.ExpectVersion); err != nil {
					return err
				}
			}
			d, err := client.ApplyPolicy(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy version %d %s (%s) active\n", d.Version, d.Hash, d.Mode)
			return nil
		},
	}
	cmd.Flags().Int64Var(&expect, "expect-version", 0, "fail unless the active version is N")
	cmd.Flags().StringVar(&signKey, "sign-key", "", "CA mode: sign with this CA private key for the next version (asks the daemon for it)")
	return cmd
}

// signForApply signs content for the version after the active one (or after
// --expect-version) with the CA key at keyPath.
func signForApply(cmd *cobra.Command, client *api.Client, keyPath string, content []byte, expect *uint64) (uint64, string, error) {
	priv, err := ca.LoadPrivateKey(keyPath)
	if err != nil {
		return 0, "", fmt.Errorf("--sign-key: %w", err)
	}
	var active uint64
	if expect != nil {
		active = *expect
	} else {
		cur, err := client.Policy(cmd.Context())
		if err != nil {
			return 0, "", err
		}
		active = cur.Version
	}
	sig, err := ca.SignPolicy(priv, content, active+1)
	if err != nil {
		return 0, "", err
	}
	return active + 1, sig, nil
}

func newPolicyShow(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the active policy with who applied it and when",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := api.NewClient(g.socketPath()).Policy(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(d)
			}
			if d.Version == 0 {
				fmt.Fprintln(out, "no policy: all inbound mesh traffic is denied (replies excepted)")
				return nil
			}
			fmt.Fprintf(out, "# version %d  %s  mode %s\n# applied by %s at %s\n%s", d.Version, d.Hash, d.Mode, d.AppliedBy, d.Time, d.Content)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newPolicyHistory(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history",
		Short: "List past policy versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := api.NewClient(g.socketPath()).PolicyHistory(cmd.Context())
			if err != nil {
				return err
			}
			for _, d := range h {
				fmt.Fprintf(cmd.OutOrStdout(), "v%-4d %s  %-7s  %s  %s\n", d.Version, d.Time, d.Mode, d.Hash, d.AppliedBy)
			}
			return nil
		},
	}
}

func newPolicyExplain(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use: "explain FROM TO PROTO/PORT|SERVICE",
		Short: "Verdict for FROM → TO (names, keys or overlay IPs, each optionally NODE/WORKLOAD), " +
			"with both sides' segments and how every rule fared (exit 0 allow, 3 deny)",
		Long: `Give the verdict of the active policy for a connection from FROM to TO
(node names, public keys or overlay IPs, each optionally NODE/WORKLOAD for a
workload's identity) on PROTO/PORT or a service of one port: both sides'
segments and how every rule fared.

Exit status: 0 when the policy allows the connection, 3 when it denies it
(also in audit mode, where such a connection is let through and logged as
audited), 1 on an error (e.g. an unknown node or no daemon), 2 on a usage
error (wrong arguments or flags). So a script can ask:

  if segmesh policy explain web-1 db-1 tcp/5432 >/dev/null; then ...`,
		Args: usageArgs(cobra.ExactArgs(3)),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := api.NewClient(g.socketPath()).Explain(cmd.Context(), args[0], args[1], args[2])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := json.NewEncoder(out).Encode(e); err != nil {
					return err
				}
			} else {
				api.FormatExplanation(out, e)
			}
			return explainExit(e)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	return withExitStatus(cmd, "0\tthe policy allows the connection",
		"3\tthe policy denies it (also in audit mode, where it is let through and logged as audited)",
		"1\tan error: an unknown node, no daemon, ...", exitUsage)
}

// usageArgs makes the errors of an argument check usage errors (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &exitError{code: 2, err: err}
		}
		return nil
	}
}

// exitDenied is policy explain's exit status for a deny.
const exitDenied = 3

// explainExit is nil for an allow and a silent exit 3 for anything else (a
// deny), so a script can test the verdict.
func explainExit(e *api.Explanation) error {
	if e.Verdict == "allow" {
		return nil
	}
	return &exitError{code: exitDenied}
}
