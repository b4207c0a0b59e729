package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/ca"
)

func newPolicySign() *cobra.Command {
	var keyFile, out string
	var version uint64
	cmd := &cobra.Command{
		Use:   "sign FILE --key KEY --version N [--out F]",
		Short: "Check a policy, then sign its content and version with the CA key (offline; CA mode)",
		Long: "Check a policy (as policy check does), then sign its content together with version N.\n" +
			"The output is the policy followed by a trailing comment line\n" +
			"  " + ca.PolicySignaturePrefix + " v1 version=N issuer=FINGERPRINT sig=BASE64\n" +
			"so it stays a valid policy file; an existing signature line is replaced.\n" +
			"Without --out the signed policy goes to stdout.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if version == 0 {
				return &exitError{code: 2, err: fmt.Errorf("--version N is required and must be at least 1")}
			}
			data, _, err := checkFile(args[0])
			if err != nil {
				return err
			}
			priv, err := ca.LoadPrivateKey(keyFile)
			if err != nil {
				return err
			}
			signed, err := ca.SignPolicyFile(priv, data, version)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if out == "" {
				out = "-"
			}
			if err := writeOutput(cmd, out, signed, 0o644, true); err != nil {
				return err
			}
			if out != "-" {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s signed as version %d\nnext: segmesh policy apply %s (or set policy_file to it)\n",
					out, args[0], version, out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "", "CA private key file (required)")
	f.Uint64Var(&version, "version", 0, "policy version the signature covers (required, >= 1)")
	f.StringVar(&out, "out", "", "signed policy file to write (default: stdout)")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}
