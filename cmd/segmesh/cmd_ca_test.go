package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/mesh"
)

// caTestRoot mirrors newRoot's persistent flags and carries the CA commands
// (the lead wires them into newRoot).
func caTestRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{Use: "segmesh", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVarP(&g.configFile, "config", "c", config.DefaultPath, "config file")
	root.PersistentFlags().StringVar(&g.socket, "socket", "", "control socket")
	policy := &cobra.Command{Use: "policy"}
	policy.AddCommand(newPolicyCheck(), newPolicySign())
	root.AddCommand(newCA(), newCert(g), policy)
	return root
}

// runCLI runs one command line in-process and returns its stdout.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := caTestRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("segmesh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// wantExit checks that err is a usage error with exit code 2.
func wantExit(t *testing.T, err error, code int) {
	t.Helper()
	var ee *exitError
	switch {
	case err == nil:
		t.Fatalf("no error, want exit %d", code)
	case code == 2 && (!errors.As(err, &ee) || ee.code != 2):
		t.Fatalf("error %v, want a usage error (exit 2)", err)
	case code == 1 && (errors.As(err, &ee) || config.IsConfigError(err)):
		t.Fatalf("error %v, want a plain failure (exit 1)", err)
	}
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// newTestCA runs `ca init` into a fresh directory and returns it.
func newTestCA(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	mustRun(t, "ca", "init", "--dir", dir)
	return dir
}

func TestCLICAInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	out := mustRun(t, "ca", "init", "--dir", dir)
	keyFile, pubFile := filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.pub")
	if mode(t, keyFile) != 0o600 || mode(t, pubFile) != 0o644 || mode(t, dir) != 0o700 {
		t.Fatalf("modes: key %04o pub %04o dir %04o", mode(t, keyFile), mode(t, pubFile), mode(t, dir))
	}
	cas, err := ca.LoadCAPublicKeys(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{ca.Fingerprint(cas[0]), "trust.ca_file", "offline"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	before, _ := os.ReadFile(keyFile)
	_, err = runCLI(t, "ca", "init", "--dir", dir)
	wantExit(t, err, 1)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second init: %v", err)
	}
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(before, after) {
		t.Fatal("second init replaced the CA key")
	}
	if _, err := runCLI(t, "ca", "init"); err == nil {
		t.Fatal("ca init without --dir succeeded")
	}
}

func TestCLICertIssueAndShow(t *testing.T) {
	caDir := newTestCA(t)
	caKey, caPub := filepath.Join(caDir, "ca.key"), filepath.Join(caDir, "ca.pub")
	dir := t.TempDir()
	nodePriv, err := mesh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := nodePriv.PublicKey().String()
	crt := filepath.Join(dir, "web-1.crt")

	out := mustRun(t, "cert", "issue", "--ca-key", caKey, "--name", "web-1", "--public-key", pub,
		"--tags", "role=web,Env=prod", "--address", "100.80.0.9", "--valid-for", "20d", "--out", crt)
	if !strings.Contains(out, "wrote "+crt) || mode(t, crt) != 0o644 {
		t.Fatalf("issue: mode %04o, output:\n%s", mode(t, crt), out)
	}
	s, err := ca.LoadCertificate(crt)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "web-1" || s.PublicKey != nodePriv.PublicKey() || s.Tags["env"] != "prod" || s.Tags["role"] != "web" ||
		s.Address4.String() != "100.80.0.9" {
		t.Fatalf("certificate: %+v", s.Certificate)
	}
	if d := s.NotAfter.Sub(s.NotBefore); d != 20*24*time.Hour+ca.ClockSkew {
		t.Fatalf("validity %v", d)
	}

	out = mustRun(t, "cert", "show", crt, "--ca", caPub)
	for _, want := range []string{"web-1", pub, "env=prod,role=web", "100.80.0.9", s.Serial.String(), "verification: ok", "expires in"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "cert", "show", crt)
	if !strings.Contains(out, "not checked") {
		t.Errorf("show without --ca:\n%s", out)
	}
	out = mustRun(t, "cert", "show", "--json", crt, "--ca", caPub)
	var js struct {
		Serial       string `json:"serial"`
		PublicKey    string `json:"public_key"`
		Verification string `json:"verification"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || js.Serial != s.Serial.String() || js.PublicKey != pub || js.Verification != "ok" {
		t.Fatalf("show --json: %v %+v\n%s", err, js, out)
	}

	// Another CA: shown, but the command fails.
	other := newTestCA(t)
	out, err = runCLI(t, "cert", "show", crt, "--ca", filepath.Join(other, "ca.pub"))
	wantExit(t, err, 1)
	if !errors.Is(err, ca.ErrUnknownIssuer) || !strings.Contains(out, "web-1") {
		t.Fatalf("show with another CA: %v\n%s", err, out)
	}
	// A tampered file fails to parse.
	bad := filepath.Join(dir, "bad.crt")
	raw, _ := s.Marshal()
	raw[len(raw)-1] ^= 1
	if err := os.WriteFile(bad, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, "cert", "show", bad, "--ca", caPub)
	if !errors.Is(err, ca.ErrBadSignature) {
		t.Fatalf("tampered: %v", err)
	}

	// --out exists: refused unless --force.
	args := []string{"cert", "issue", "--ca-key", caKey, "--name", "web-1", "--public-key", pub, "--out", crt}
	_, err = runCLI(t, args...)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("overwrite: %v", err)
	}
	mustRun(t, append(args, "--force")...)
	s2, err := ca.LoadCertificate(crt)
	if err != nil || s2.Serial == s.Serial || len(s2.Tags) != 0 {
		t.Fatalf("forced re-issue: %v %+v", err, s2)
	}
}

func TestCLICertIssueFromConfig(t *testing.T) {
	caKey := filepath.Join(newTestCA(t), "ca.key")
	dir := t.TempDir()
	nodePriv, err := mesh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "private.key")
	if err := mesh.WriteSecretFile(keyFile, []byte(nodePriv.String()+"\n"), false); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "segmesh.yaml")
	// Only name and private_key_file matter; an unknown key must not stop cert issue.
	yaml := "name: db-1\nprivate_key_file: " + keyFile + "\ntags: {role: ignored}\nnot_a_key: 1\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	crt := filepath.Join(dir, "db-1.crt")
	mustRun(t, "cert", "issue", "--ca-key", caKey, "--config", cfg, "--tags", "role=db", "--out", crt)
	s, err := ca.LoadCertificate(crt)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "db-1" || s.PublicKey != nodePriv.PublicKey() || s.Tags["role"] != "db" {
		t.Fatalf("from config: %+v", s.Certificate)
	}
	// -c before the subcommand, --name overrides the config's name.
	crt2 := filepath.Join(dir, "db-1b.crt")
	mustRun(t, "-c", cfg, "cert", "issue", "--ca-key", caKey, "--name", "db-1b", "--out", crt2)
	if s, err := ca.LoadCertificate(crt2); err != nil || s.Name != "db-1b" || s.PublicKey != nodePriv.PublicKey() {
		t.Fatalf("-c with --name: %v %+v", err, s)
	}

	// A readable node key is refused.
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, "cert", "issue", "--ca-key", caKey, "--config", cfg, "--out", filepath.Join(dir, "x.crt"))
	if !errors.Is(err, mesh.ErrKeyPermissions) {
		t.Fatalf("readable node key: %v", err)
	}
	// A config without a name.
	noName := filepath.Join(dir, "noname.yaml")
	if err := os.WriteFile(noName, []byte("private_key_file: "+keyFile+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = runCLI(t, "cert", "issue", "--ca-key", caKey, "--config", noName, "--out", filepath.Join(dir, "y.crt")); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("config without name: %v", err)
	}
}

func TestCLICertIssueUsageErrors(t *testing.T) {
	caDir := newTestCA(t)
	caKey := filepath.Join(caDir, "ca.key")
	dir := t.TempDir()
	k, _ := mesh.GenerateKey()
	pub := k.PublicKey().String()
	out := filepath.Join(dir, "c.crt")
	for name, args := range map[string][]string{
		"no identity":         {"--ca-key", caKey, "--out", out},
		"name only":           {"--ca-key", caKey, "--name", "a", "--out", out},
		"config and key":      {"--ca-key", caKey, "--config", "x.yaml", "--public-key", pub, "--out", out},
		"bad key":             {"--ca-key", caKey, "--name", "a", "--public-key", "nope", "--out", out},
		"bad tags":            {"--ca-key", caKey, "--name", "a", "--public-key", pub, "--tags", "role", "--out", out},
		"IPv6 address":        {"--ca-key", caKey, "--name", "a", "--public-key", pub, "--address", "fd00::1", "--out", out},
		"bad validity":        {"--ca-key", caKey, "--name", "a", "--public-key", pub, "--valid-for", "1y", "--out", out},
		"negative validity":   {"--ca-key", caKey, "--name", "a", "--public-key", pub, "--valid-for", "-5h", "--out", out},
		"space in the name":   {"--ca-key", caKey, "--name", "a b", "--public-key", pub, "--out", out},
		"missing --out":       {"--ca-key", caKey, "--name", "a", "--public-key", pub},
		"missing --ca-key":    {"--name", "a", "--public-key", pub, "--out", out},
		"unexpected argument": {"--ca-key", caKey, "--name", "a", "--public-key", pub, "--out", out, "extra"},
	} {
		_, err := runCLI(t, append([]string{"cert", "issue"}, args...)...)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, statErr := os.Stat(out); statErr == nil {
			t.Fatalf("%s: wrote a certificate", name)
		}
	}
	// A group-readable CA key is refused.
	if err := os.Chmod(caKey, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := runCLI(t, "cert", "issue", "--ca-key", caKey, "--name", "a", "--public-key", pub, "--out", out)
	if !errors.Is(err, ca.ErrKeyPermissions) {
		t.Fatalf("readable CA key: %v", err)
	}
}

const testPolicy = `mode: enforce
segments:
  web: {role: web}
  db: {role: db}
rules:
  - name: web-to-db
    from: [web]
    to: [db]
    ports: [tcp/5432]
tests:
  - {from: web, to: db, port: tcp/5432, expect: allow}
`

func TestCLIPolicySign(t *testing.T) {
	caDir := newTestCA(t)
	caKey, caPub := filepath.Join(caDir, "ca.key"), filepath.Join(caDir, "ca.pub")
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	signed := filepath.Join(dir, "policy.signed.yaml")
	out := mustRun(t, "policy", "sign", pol, "--key", caKey, "--version", "3", "--out", signed)
	if !strings.Contains(out, "version 3") || mode(t, signed) != 0o644 {
		t.Fatalf("sign: mode %04o\n%s", mode(t, signed), out)
	}
	data, _ := os.ReadFile(signed)
	cas, _ := ca.LoadCAPublicKeys(caPub)
	content, v, err := ca.VerifySignedPolicy(cas, data)
	if err != nil || v != 3 || string(content) != testPolicy {
		t.Fatalf("verify: %v v%d\n%s", err, v, content)
	}
	// The signed file is still a valid policy file.
	mustRun(t, "policy", "check", signed)

	// To stdout, re-signing a signed file replaces its signature.
	out = mustRun(t, "policy", "sign", signed, "--key", caKey, "--version", "4")
	content, v, err = ca.VerifySignedPolicy(cas, []byte(out))
	if err != nil || v != 4 || string(content) != testPolicy {
		t.Fatalf("re-sign to stdout: %v v%d\n%s", err, v, out)
	}

	_, err = runCLI(t, "policy", "sign", pol, "--key", caKey, "--version", "0")
	wantExit(t, err, 2)
	if _, err = runCLI(t, "policy", "sign", pol, "--key", caKey); err == nil {
		t.Fatal("no --version accepted")
	}
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("mode: enforce\nrules: [{name: x, from: [nope], to: [nope], ports: [tcp/1]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	brokenOut := filepath.Join(dir, "broken.signed")
	if _, err = runCLI(t, "policy", "sign", broken, "--key", caKey, "--version", "1", "--out", brokenOut); err == nil {
		t.Fatal("an invalid policy was signed")
	}
	if _, err := os.Stat(brokenOut); err == nil {
		t.Fatal("an invalid policy was written")
	}
}

func TestCLICertRevokeOut(t *testing.T) {
	caDir := newTestCA(t)
	caKey, caPub := filepath.Join(caDir, "ca.key"), filepath.Join(caDir, "ca.pub")
	cas, _ := ca.LoadCAPublicKeys(caPub)
	dir := t.TempDir()
	serial, _ := ca.NewSerial()
	rev := filepath.Join(dir, "revoke.pem")
	out := mustRun(t, "cert", "revoke", "--ca-key", caKey, "--serial", serial.String(), "--reason", "decommissioned", "--out", rev)
	if !strings.Contains(out, "--signed "+rev) || mode(t, rev) != 0o644 {
		t.Fatalf("revoke --out: mode %04o\n%s", mode(t, rev), out)
	}
	e, err := ca.LoadRevocation(rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Verify(cas); err != nil || e.Serial != serial || e.Reason != "decommissioned" {
		t.Fatalf("entry: %v %+v", err, e.Revocation)
	}
	k, _ := mesh.GenerateKey()
	revKey := filepath.Join(dir, "revoke-key.pem")
	mustRun(t, "cert", "revoke", "--ca-key", caKey, "--public-key", k.PublicKey().String(), "--out", revKey)
	if e, err := ca.LoadRevocation(revKey); err != nil || e.PublicKey != k.PublicKey() || e.Verify(cas) != nil {
		t.Fatalf("key entry: %v", err)
	}
	_, err = runCLI(t, "cert", "revoke", "--ca-key", caKey, "--serial", serial.String(), "--out", rev)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v", err)
	}

	for name, args := range map[string][]string{
		"no target":      {"--ca-key", caKey, "--out", rev + "2"},
		"two targets":    {"--ca-key", caKey, "--serial", serial.String(), "--public-key", k.PublicKey().String(), "--out", rev + "2"},
		"no key":         {"--serial", serial.String(), "--out", rev + "2"},
		"bad serial":     {"--ca-key", caKey, "--serial", "xyz", "--out", rev + "2"},
		"signed + other": {"--signed", rev, "--serial", serial.String()},
	} {
		_, err := runCLI(t, append([]string{"cert", "revoke"}, args...)...)
		wantExit(t, err, 2)
		if _, statErr := os.Stat(rev + "2"); statErr == nil {
			t.Fatalf("%s: wrote a file", name)
		}
	}
}
