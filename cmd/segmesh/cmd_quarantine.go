package main

import (
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/quarantine"
)

const quarantineLong = `Cut a node off the mesh in seconds, on every node: all mesh traffic from
and to it is dropped — established flows too — except connections from the
--allow-from segments (a forensic path, still subject to the policy) and
their replies. It stays a WireGuard peer; the receivers enforce, so
flushing its own nftables table gains a compromised node nothing. The entry
is versioned, spread through gossip, persisted and learned by nodes that
join later; a newer release or quarantine of the same node supersedes it.

NODE is a name, a public key or an overlay address; a name several nodes
carry is an error listing them.

Open mode: any node's control socket (root); the quarantined node's own
daemon refuses to release itself, but root there holds the cluster key, so
against root on it use CA mode. CA mode: sign the entry with
--sign-key, the CA key or an operator key listed in trust.operator_keys_file
on every node (segmesh ca operator-key makes one); then nothing on the fleet
can lift it.

Returns once this node enforces it; exit 1 on an error (e.g. no such node,
a newer entry exists, an unsigned entry in CA mode).

Inspect: segmesh status (the "quarantined" list; on the node itself a first
line THIS NODE IS QUARANTINED), segmesh top (peer state "quarantined"), the
metrics segmesh_quarantined_nodes and segmesh_packets_quarantined_total.
Lift: segmesh release NODE; for good (CA mode): segmesh cert revoke. The
runbook: docs/fleet.md, "Incident response".`

func newQuarantine(g *globals) *cobra.Command {
	var allowFrom []string
	var reason, signKey string
	cmd := &cobra.Command{
		Use:   "quarantine NODE",
		Short: "Cut a node off the mesh everywhere, except from the --allow-from segments (forensics)",
		Long:  quarantineLong,
		Example: `  segmesh quarantine web-3 --allow-from ops --reason "INC-4711 beaconing to 203.0.113.9"
  segmesh quarantine web-3 --allow-from ops --sign-key /secure/operator.key   # CA mode`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sendQuarantine(cmd, g, args[0], quarantine.ActionQuarantine, allowFrom, reason, signKey)
		},
	}
	cmd.Flags().StringSliceVar(&allowFrom, "allow-from", nil, "segments that may still reach the node (comma-separated), e.g. ops")
	cmd.Flags().StringVar(&reason, "reason", "", "why (at most 200 bytes), shown in status, top and the logs")
	cmd.Flags().StringVar(&signKey, "sign-key", "", "CA mode: sign with this CA or operator private key")
	return cmd
}

func newRelease(g *globals) *cobra.Command {
	var signKey, reason string
	cmd := &cobra.Command{
		Use:   "release NODE",
		Short: "Lift a node's quarantine everywhere: the policy's access again",
		Long: `Lift a node's quarantine on every node (a versioned release entry that
supersedes the quarantine, spread like it). NODE as for quarantine; CA mode:
--sign-key as for quarantine. Returns once this node lets the node in again.

A node that is not coming back is better revoked (CA mode, permanent):
segmesh cert revoke --public-key KEY.`,
		Example: `  segmesh release web-3 --reason "INC-4711 closed: rebuilt"
  segmesh release web-3 --sign-key /secure/operator.key   # CA mode`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sendQuarantine(cmd, g, args[0], quarantine.ActionRelease, nil, reason, signKey)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (at most 200 bytes)")
	cmd.Flags().StringVar(&signKey, "sign-key", "", "CA mode: sign with this CA or operator private key")
	return cmd
}

// sendQuarantine resolves node, builds the entry (signed with signKey when
// set) and sends it to the daemon.
func sendQuarantine(cmd *cobra.Command, g *globals, node, action string, allowFrom []string, reason, signKey string) error {
	c := api.NewClient(g.socketPath())
	ref, err := c.ResolveNode(cmd.Context(), node)
	if err != nil {
		return err
	}
	for i, s := range allowFrom {
		allowFrom[i] = strings.ToLower(strings.TrimSpace(s))
	}
	e := quarantine.Entry{Target: ref.PublicKey, Name: ref.Name, Action: action, AllowFrom: allowFrom,
		Reason: reason, Time: time.Now().UnixNano(), By: operator()}
	if e.AllowFrom == nil {
		e.AllowFrom = []string{}
	}
	if signKey != "" {
		priv, err := ca.LoadPrivateKey(signKey)
		if err != nil {
			return fmt.Errorf("--sign-key: %w", err)
		}
		if e, err = quarantine.Sign(priv, e); err != nil {
			return err
		}
	} else if err := e.Validate(); err != nil {
		return &exitError{code: 2, err: err}
	}
	res, err := c.Quarantine(cmd.Context(), api.QuarantineEntry(e))
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if action == quarantine.ActionRelease {
		fmt.Fprintf(out, "released %s (%s): the policy's access again, on every node as the entry spreads\n", res.Node, ref.PublicKey)
		return nil
	}
	from := "nobody"
	if len(allowFrom) > 0 {
		from = "segments " + strings.Join(allowFrom, ", ")
	}
	fmt.Fprintf(out, "quarantined %s (%s): cut off on this node now, on every node as the entry spreads; reachable from %s\n"+
		"  inspect: segmesh status (quarantined), segmesh top; lift: segmesh release %s\n", res.Node, ref.PublicKey, from, res.Node)
	return nil
}

// operator names who issues an entry: user@host.
func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func newCAOperatorKey() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "operator-key --dir DIR",
		Short: "Create an operator key pair that may sign quarantines and releases only: DIR/operator.key (0600), DIR/operator.pub",
		Long: `Create an operator key pair: DIR/operator.key (0600) and DIR/operator.pub.
An operator key may sign quarantines and releases (segmesh quarantine,
segmesh release --sign-key) and nothing else: not policies, revocations or
certificates, which need the CA key. So the incident responders on call can
cut a node off in CA mode without the offline CA key.

Append operator.pub's line to the file trust.operator_keys_file names on
every node (one key per line; one per responder or team) and restart the
nodes. Keep operator.key with the responders, off the fleet. If it leaks,
remove its line everywhere and restart: the entries it signed are dropped
then, so re-issue the quarantines still needed with another key first.`,
		Example: `  segmesh ca operator-key --dir /secure/ops
  segmesh quarantine web-3 --allow-from ops --sign-key /secure/ops/operator.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := ca.InitKeyPair(dir, ca.OperatorKeyFile, ca.OperatorPubKeyFile, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "wrote %s (0600): the operator private key, for the incident responders\n", r.PrivateKeyFile)
			fmt.Fprintf(out, "wrote %s: the operator public key, fingerprint %s\n", r.PublicKeyFile, r.Fingerprint)
			fmt.Fprintf(out, "\nnext: append %s to the file trust.operator_keys_file names on every node and restart them;\n"+
				"then: segmesh quarantine NODE --allow-from ops --sign-key %s\n"+
				"It signs quarantines and releases only: policies, revocations and certificates need the CA key.\n",
				r.PublicKeyFile, r.PrivateKeyFile)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write operator.key and operator.pub into (created 0700; required)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
