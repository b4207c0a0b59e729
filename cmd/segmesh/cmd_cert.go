package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/mesh"
)

func newCert(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Issue, show and revoke node certificates (CA mode)"}
	cmd.AddCommand(newCertIssue(g), newCertShow(), newCertRevoke(g))
	return cmd
}

func newCertIssue(g *globals) *cobra.Command {
	var caKey, name, pubKey, tags, address, validFor, out string
	var workloadTags []string
	var force bool
	cmd := &cobra.Command{
		Use: "issue --ca-key K (--config F | --name N --public-key P) --tags k=v,.. [--workload-tags k=v,..] " +
			"[--address IP] [--valid-for D] --out F",
		Short: "Issue a node certificate binding a WireGuard key to a name, tags, optionally an IPv4 " +
			"and the tags its workloads may carry",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tmpl, err := certTemplate(cmd, g, name, pubKey, tags, address)
			if err != nil {
				return err
			}
			tmpl.WorkloadTags, err = workloadTagsFlag(workloadTags, tmpl.Tags)
			if err != nil {
				return err
			}
			validity, err := ca.ParseValidity(validFor)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--valid-for: %w", err)}
			}
			priv, err := ca.LoadPrivateKey(caKey)
			if err != nil {
				return err
			}
			now := time.Now()
			tmpl.NotBefore = now.Add(-ca.ClockSkew)
			tmpl.NotAfter = now.Add(validity)
			s, err := ca.Issue(priv, tmpl)
			if err != nil {
				return err
			}
			p, err := s.PEM()
			if err != nil {
				return err
			}
			if err := writeOutput(cmd, out, p, 0o644, force); err != nil {
				return err
			}
			if out != "-" {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: certificate %s for %s (%s), tags %s, workload tags %s, valid until %s\n",
					out, s.Serial, s.Name, s.PublicKey, api.FormatTags(s.Tags), orNone(ca.FormatTagPairs(s.WorkloadTags)),
					s.NotAfter.Format(time.RFC3339))
				fmt.Fprintf(cmd.OutOrStdout(), "next: copy it to the node and set trust.cert_file to it, then segmesh reload\n")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caKey, "ca-key", "", "CA private key file (from segmesh ca init; required)")
	f.StringVar(&name, "name", "", "node name (default with --config: the config's name)")
	f.StringVar(&pubKey, "public-key", "", "the node's WireGuard public key (base64)")
	f.StringVar(&tags, "tags", "", "attested tags as k=v,k=v")
	f.StringArrayVar(&workloadTags, "workload-tags", nil,
		"tags the node's workloads may carry, as k=v,k=v (repeatable; one key may have several values; default: none)")
	f.StringVar(&address, "address", "", "fix the node's overlay IPv4 (optional)")
	f.StringVar(&validFor, "valid-for", "365d", "validity, e.g. 365d or 720h")
	f.StringVar(&out, "out", "", "certificate file to write, - for stdout (required)")
	f.BoolVar(&force, "force", false, "overwrite an existing --out file")
	_ = cmd.MarkFlagRequired("ca-key")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// certTemplate gathers the identity to certify from the flags, or from a
// node's config (-c/--config) when no --public-key is given.
func certTemplate(cmd *cobra.Command, g *globals, name, pubKey, tags, address string) (ca.Certificate, error) {
	var t ca.Certificate
	usage := func(format string, args ...any) error {
		return &exitError{code: 2, err: fmt.Errorf(format, args...)}
	}
	fromConfig := cmd.Flags().Changed("config")
	switch {
	case fromConfig && pubKey != "":
		return t, usage("give either --config F or --name N --public-key P, not both")
	case fromConfig:
		cfgName, key, err := nodeIdentity(g.configFile)
		if err != nil {
			return t, err
		}
		t.PublicKey = key
		t.Name = cfgName
		if name != "" {
			t.Name = name
		}
	case name == "" || pubKey == "":
		return t, usage("give --config F (a node's config) or both --name N and --public-key P")
	default:
		k, err := mesh.ParseKey(pubKey)
		if err != nil {
			return t, usage("--public-key: %w", err)
		}
		t.Name, t.PublicKey = name, k
	}
	var err error
	if t.Tags, err = config.ParseTags(tags); err != nil {
		return t, usage("--tags: %w", err)
	}
	if address != "" {
		a, err := netip.ParseAddr(address)
		if err != nil || !a.Is4() {
			return t, usage("--address %q: want an IPv4 address", address)
		}
		t.Address4 = a
	}
	return t, nil
}

// workloadTagsFlag merges the --workload-tags flags into one sorted list of
// pairs without repeats, refusing a bad pair or one whose key is a node tag
// (a workload may not redefine a node tag).
func workloadTagsFlag(flags []string, nodeTags map[string]string) ([]ca.TagPair, error) {
	pairs, err := ca.ParseTagPairs(strings.Join(flags, ","))
	if err != nil {
		return nil, &exitError{code: 2, err: fmt.Errorf("--workload-tags: %w", err)}
	}
	for _, p := range pairs {
		if _, set := nodeTags[p.Key]; set {
			return nil, &exitError{code: 2, err: fmt.Errorf("--workload-tags %s: %s is a node tag (--tags), which a workload may not redefine", p, p.Key)}
		}
	}
	return pairs, nil
}

// nodeIdentity reads only `name` and `private_key_file` from a node's config
// file (the rest is not validated: the CA host need not run segmesh) and
// derives the public key from the private key.
func nodeIdentity(path string) (string, mesh.Key, error) {
	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return "", mesh.Key{}, fmt.Errorf("read %s: %w", path, err)
	}
	name := strings.TrimSpace(v.GetString("name"))
	if name == "" {
		return "", mesh.Key{}, fmt.Errorf("%s sets no name (the node's default is its hostname): pass --name", path)
	}
	keyFile := strings.TrimSpace(v.GetString("private_key_file"))
	if keyFile == "" {
		keyFile = config.DefaultKeyFile
	}
	priv, err := mesh.LoadPrivateKey(keyFile)
	if err != nil {
		return "", mesh.Key{}, fmt.Errorf("%s: private_key_file: %w", path, err)
	}
	return name, priv.PublicKey(), nil
}

// writeOutput writes data to path ("-": stdout) with mode perm, refusing to
// replace an existing file unless overwrite.
func writeOutput(cmd *cobra.Command, path string, data []byte, perm fs.FileMode, overwrite bool) error {
	if path == "-" {
		_, err := cmd.OutOrStdout().Write(data)
		return err
	}
	if err := ca.WriteFile(path, data, perm, overwrite); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w (use --force to overwrite)", err)
		}
		return err
	}
	return nil
}

func newCertShow() *cobra.Command {
	var caFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Decode a certificate and, with --ca, verify it (exit 1 if it is not valid now)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := ca.LoadCertificate(args[0])
			if err != nil {
				return err
			}
			now := time.Now()
			verdict, verr := "not checked (give --ca FILE)", error(nil)
			if caFile != "" {
				cas, err := ca.LoadCAPublicKeys(caFile)
				if err != nil {
					return err
				}
				if verr = s.Verify(cas, now); verr == nil {
					verdict = "ok"
				} else {
					verdict = verr.Error()
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					ca.CertInfo
					Verification string `json:"verification"`
				}{s.Info(), verdict}); err != nil {
					return err
				}
				return verr
			}
			printCert(out, &s.Certificate, now)
			fmt.Fprintf(out, "verification: %s\n", verdict)
			return verr
		},
	}
	cmd.Flags().StringVar(&caFile, "ca", "", "CA public key file (trust.ca_file) to verify against")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func printCert(w io.Writer, c *ca.Certificate, now time.Time) {
	i := c.Info()
	addr := i.Address4
	if addr == "" {
		addr = "(not fixed: derived from the key)"
	}
	fmt.Fprintf(w, "format:      %d\nserial:      %s\nname:        %s\npublic key:  %s\ntags:        %s\n"+
		"workload tags: %s\naddress:     %s\nnot before:  %s\nnot after:   %s\nissuer:      %s\n",
		i.Format, i.Serial, i.Name, i.PublicKey, api.FormatTags(c.Tags), orNone(ca.FormatTagPairs(c.WorkloadTags)),
		addr, i.NotBefore, i.NotAfter, i.Issuer)
	if left := c.NotAfter.Sub(now); left > 0 && c.ExpiresWithin(now, 30*24*time.Hour) {
		fmt.Fprintf(w, "warning:     expires in %s\n", roughDuration(left))
	}
}

func newCertRevoke(g *globals) *cobra.Command {
	var caKey, pubKey, serial, reason, out, signedFile string
	var force bool
	cmd := &cobra.Command{
		Use: "revoke --ca-key K (--public-key P | --serial S) [--reason R] [--out F] | --signed F",
		Short: "Revoke a certificate by serial or every certificate of a key: send it to the local daemon, " +
			"or write it to a file (--out) to send later from any node (--signed)",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			usage := func(format string, args ...any) error {
				return &exitError{code: 2, err: fmt.Errorf(format, args...)}
			}
			if signedFile != "" {
				if caKey != "" || pubKey != "" || serial != "" || out != "" || reason != "" {
					return usage("--signed F sends an existing entry: it takes no other revocation flag")
				}
				e, err := ca.LoadRevocation(signedFile)
				if err != nil {
					return err
				}
				return sendRevocation(cmd, g, e)
			}
			if caKey == "" {
				return usage("give --ca-key K (with --public-key or --serial) or --signed F")
			}
			var r ca.Revocation
			switch {
			case (pubKey == "") == (serial == ""):
				return usage("give exactly one of --public-key and --serial (never a name: names may repeat)")
			case pubKey != "":
				k, err := mesh.ParseKey(pubKey)
				if err != nil {
					return usage("--public-key: %w", err)
				}
				r.PublicKey = k
			default:
				s, err := ca.ParseSerial(serial)
				if err != nil {
					return usage("--serial: %w", err)
				}
				r.Serial = s
			}
			r.Reason = reason
			priv, err := ca.LoadPrivateKey(caKey)
			if err != nil {
				return err
			}
			e, err := ca.Revoke(priv, r)
			if err != nil {
				return err
			}
			if out == "" {
				return sendRevocation(cmd, g, e)
			}
			p, err := e.PEM()
			if err != nil {
				return err
			}
			if err := writeOutput(cmd, out, p, 0o644, force); err != nil {
				return err
			}
			if out != "-" {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: signed revocation of %s\nnext: segmesh cert revoke --signed %s (on any node; it spreads through the mesh)\n",
					out, e.Target(), out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caKey, "ca-key", "", "CA private key file")
	f.StringVar(&pubKey, "public-key", "", "revoke every certificate of this WireGuard public key")
	f.StringVar(&serial, "serial", "", "revoke the certificate with this serial (hex)")
	f.StringVar(&reason, "reason", "", "free-text reason recorded in the entry")
	f.StringVar(&out, "out", "", "write the signed entry to this file (- for stdout) instead of sending it")
	f.StringVar(&signedFile, "signed", "", "send a previously written entry (from --out) to the local daemon")
	f.BoolVar(&force, "force", false, "overwrite an existing --out file")
	return cmd
}

// sendRevocation hands a signed entry to the local daemon.
func sendRevocation(cmd *cobra.Command, g *globals, e *ca.SignedRevocation) error {
	p, err := e.PEM()
	if err != nil {
		return err
	}
	r, err := api.NewClient(g.socketPath()).Revoke(cmd.Context(), p)
	if err != nil {
		return err
	}
	if r.Added {
		fmt.Fprintf(cmd.OutOrStdout(), "revoked %s (revocation list version %d)\n", r.Target, r.Version)
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "already revoked: %s (revocation list version %d)\n", r.Target, r.Version)
	}
	return nil
}

// roughDuration renders d as days when it is two days or more.
func roughDuration(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.Round(time.Minute).String()
}

// orNone is s, or "(none)" when s is empty.
func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
