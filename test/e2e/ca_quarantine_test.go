package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// newOperatorKey runs `segmesh ca operator-key` and lists its public key in
// every node's trust.operator_keys_file; it returns the private key's path.
func newOperatorKey(t *testing.T, nodes ...*harness.Node) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ops")
	if r := segmeshCLI(t, "ca", "operator-key", "--dir", dir); r.code != 0 {
		t.Fatalf("%v", r)
	}
	for _, n := range nodes {
		if err := harness.EditConfig(n.ConfigPath, map[string]any{
			"trust": map[string]any{"operator_keys_file": filepath.Join(dir, "operator.pub")},
		}); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "operator.key")
}

// testCAQuarantine: in CA mode an unsigned quarantine is refused; one
// signed by the operator key is accepted everywhere (db1 loses app1,
// web1 in --allow-from keeps it); the operator key cannot sign a policy
// or a revocation; an operator-signed release restores access.
func testCAQuarantine(t *testing.T, f *caFixture) {
	tc := f.tc.With(t)
	trusted := []*harness.Node{f.web, f.app, f.db}
	appKey := f.key(f.app)
	r := segmeshCLI(t, "quarantine", "app1", "--allow-from", "web", "--socket", f.db.Socket)
	if r.code == 0 || !strings.Contains(r.stderr, "unsigned") {
		t.Errorf("unsigned quarantine in CA mode: want refused as unsigned: %v", r)
	}
	if err := holdsFor(trusted, 500*time.Millisecond, quarantinedOn(appKey, false)); err != nil {
		t.Errorf("after the refused quarantine: %v", err)
	}
	start := time.Now()
	r = segmeshCLI(t, "quarantine", "app1", "--allow-from", "web", "--reason", "CA-mode drill", "--sign-key", f.operator, "--socket", f.db.Socket)
	if r.code != 0 {
		t.Fatalf("operator-signed quarantine: %v", r)
	}
	if _, err := waitNodes(trusted, start, 2*time.Second, quarantinedOn(appKey, true)); err != nil {
		t.Fatalf("operator-signed quarantine not everywhere within 2 s: %v", err)
	}
	expectProbe(t, f.db, tcpTo(f.addr4(f.app), 7000), resTimeout)
	expectProbe(t, f.web, tcpTo(f.addr4(f.app), 8080), resOK) // web is in --allow-from
	t.Logf("operator-signed quarantine of app1 everywhere %v after the command; db1 cut off, web1 (allow-from) still reaches it",
		time.Since(start).Round(time.Millisecond))

	// The operator key signs quarantines only.
	before, err := policyOf(f.web)
	if err != nil {
		t.Fatal(err)
	}
	file := writePolicy(t, f.web, strings.Replace(caPolicy, "tcp/7000]", "tcp/7000, tcp/7001]", 1))
	if r := segmeshCLI(t, "policy", "apply", file, "--sign-key", f.operator, "--socket", f.web.Socket); r.code == 0 {
		t.Errorf("a policy signed by the operator key was accepted: %v", r)
	} else {
		t.Logf("operator-signed policy refused: %s", strings.TrimSpace(r.stderr))
	}
	if r := segmeshCLI(t, "cert", "revoke", "--ca-key", f.operator, "--public-key", f.key(f.db), "--reason", "not allowed", "--socket", f.web.Socket); r.code == 0 {
		t.Errorf("a revocation signed by the operator key was accepted: %v", r)
	} else {
		t.Logf("operator-signed revocation refused: %s", strings.TrimSpace(r.stderr))
	}
	if err := holdsFor(trusted, 500*time.Millisecond, hasPolicy(before.Version, before.Hash)); err != nil {
		t.Errorf("after the refused policy: %v", err)
	}
	if st := tc.Status(f.web); len(st.Peers) == 0 {
		t.Fatal("web1 lists no peers")
	} else if p, ok := st.Peer(f.key(f.db)); !ok || p.State == harness.StateUntrusted {
		t.Errorf("db1 after the refused revocation: %+v", p)
	}

	r = segmeshCLI(t, "release", "app1", "--sign-key", f.operator, "--socket", f.web.Socket)
	if r.code != 0 {
		t.Fatalf("operator-signed release: %v", r)
	}
	if _, err := waitNodes(trusted, time.Now(), 2*time.Second, quarantinedOn(appKey, false)); err != nil {
		t.Fatalf("release not everywhere within 2 s: %v", err)
	}
	tc.WaitFor("db1 reaches app1 tcp/7000 again", 5*time.Second, func() error {
		got, err := probeOne(f.db.Namespace, denyTimeout, tcpTo(f.addr4(f.app), 7000))
		if err == nil && got != resOK {
			err = fmt.Errorf("db1 -> app1 tcp/7000: %s", got)
		}
		return err
	})
}
