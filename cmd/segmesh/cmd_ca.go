package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/ca"
)

func newCA() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "Mesh certificate authority (offline; keep its key off the fleet)"}
	cmd.AddCommand(newCAInit(), newCAOperatorKey())
	return cmd
}

func newCAInit() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a mesh CA key pair: DIR/ca.key (0600) and DIR/ca.pub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := ca.InitDir(dir, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "wrote %s (0600): the CA private key; keep it offline, never on a mesh node\n", r.PrivateKeyFile)
			fmt.Fprintf(out, "wrote %s: the CA public key, fingerprint %s\n", r.PublicKeyFile, r.Fingerprint)
			fmt.Fprintf(out, "\nnext:\n"+
				"  1. copy %s to every node and set trust.ca_file to it\n"+
				"     (during a CA rotation, list the old and the new key in that file, one per line)\n"+
				"  2. issue each node its certificate and set trust.cert_file to it:\n"+
				"       segmesh cert issue --ca-key %s --name NAME --public-key KEY --tags role=web --out NAME.crt\n"+
				"  3. sign policies offline: segmesh policy sign policy.yaml --key %s --version N --out policy.signed.yaml\n",
				r.PublicKeyFile, r.PrivateKeyFile, r.PrivateKeyFile)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write ca.key and ca.pub into (created 0700; required)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
