package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// caFixture is the CA-mode cluster TestCATrust's subtests share: web1,
// app1 and db1 with certificates for their declared roles, and "liar",
// whose config declares role db but whose certificate (name web2) says
// role web. Every node starts with caPolicy signed as version 1 as its
// policy_file and serves caTCP.
type caFixture struct {
	tc                 *harness.TestCluster
	ca                 *authority
	acl                *aclFixture // the trusted nodes, attested tags, policy in force
	web, app, db, liar *harness.Node
	certs              map[*harness.Node]string
	v1File             string // caPolicy signed for version 1
	operator           string // an operator key (may sign quarantines only), in every node's trust.operator_keys_file
}

func (f *caFixture) nodes() []*harness.Node { return []*harness.Node{f.web, f.app, f.db, f.liar} }

// key and addr4/addr6 give a node's public key and overlay addresses.
func (f *caFixture) key(n *harness.Node) string   { return f.acl.self[n].Self.PublicKey }
func (f *caFixture) addr4(n *harness.Node) string { return f.acl.self[n].Self.Address }
func (f *caFixture) addr6(n *harness.Node) string { return f.acl.self[n].Self.Address6 }

func newCAFixture(t *testing.T) *caFixture {
	t.Helper()
	ca := newAuthority(t, t.TempDir())
	v1File, v1 := ca.sign(t, caPolicy, 1)
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: v1})
	f := &caFixture{tc: tc, ca: ca, v1File: v1File, certs: map[*harness.Node]string{}}
	f.web = tc.AddNode(harness.NodeSpec{Name: "web1", Tags: role("web")})
	join := []string{f.web.GossipAddr()}
	f.app = tc.AddNode(harness.NodeSpec{Name: "app1", Tags: role("app"), Join: join})
	f.db = tc.AddNode(harness.NodeSpec{Name: "db1", Tags: role("db"), Join: join})
	f.liar = tc.AddNode(harness.NodeSpec{Name: "liar", Tags: role("db"), Join: join})
	attested := map[*harness.Node]map[string]string{
		f.web: role("web"), f.app: role("app"), f.db: role("db"), f.liar: role("web"),
	}
	for _, n := range []*harness.Node{f.web, f.app, f.db} {
		f.certs[n] = ca.trust(t, n, attested[n])
	}
	f.certs[f.liar] = ca.trust(t, f.liar, attested[f.liar], "--name", "web2", "--public-key", tc.PublicKey(f.liar))
	f.operator = newOperatorKey(t, f.nodes()...)

	nodes := f.nodes()
	f.acl = &aclFixture{tc: tc, nodes: nodes, byName: map[string]*harness.Node{},
		self: map[*harness.Node]*harness.Status{}, tags: attested}
	f.acl.setPolicy(t, caPolicy)
	for _, n := range nodes {
		f.acl.byName[n.Name] = n
	}
	start := time.Now()
	tc.Start(nodes...)
	tc.WaitMesh(meshTimeout, nodes...)
	for _, n := range nodes {
		f.acl.self[n] = tc.Status(n)
	}
	tc.WaitFor("signed policy v1 enforced everywhere as the model says", 20*time.Second, func() error {
		p, err := policyOf(f.web)
		if err != nil {
			return err
		}
		if p.Version != 1 {
			return fmt.Errorf("web1: policy v%d", p.Version)
		}
		for _, n := range nodes {
			if err := allOf(hasPolicy(p.Version, p.Hash), f.acl.setsMatch)(n); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
		}
		return nil
	})
	t.Logf("TIMING 4 CA-mode nodes with a signed policy_file: start -> policy v1 enforced everywhere: %v",
		time.Since(start).Round(time.Millisecond))
	for _, n := range nodes {
		startServer(t, tc, n.Namespace, "serve-"+n.Name, caTCP, nil)
	}
	return f
}

// TestCATrust runs the CA-mode checks on one cluster, in order: status in
// CA mode, nodes without a valid certificate kept out, certificate tags
// winning over declared ones, signed policies only, certificate expiry and
// revocation.
func TestCATrust(t *testing.T) {
	f := newCAFixture(t)
	t.Run("status in CA mode", func(t *testing.T) { testCAStatus(t, f) })
	t.Run("no certificate, no peer", func(t *testing.T) { testCAUntrusted(t, f) })
	t.Run("certificate tags win", func(t *testing.T) { testCATagsFromCert(t, f) })
	t.Run("signed policies only", func(t *testing.T) { testCASignedPolicy(t, f) })
	t.Run("quarantine signed by an operator key", func(t *testing.T) { testCAQuarantine(t, f) })
	t.Run("certificate expiry", func(t *testing.T) { testCAExpiry(t, f) })
	t.Run("revocation", func(t *testing.T) { testCARevocation(t, f) })
}

// testCAStatus: status --json says trust "ca" and carries every
// certificate's end, for self and for peers, as `cert show` reads it.
func testCAStatus(t *testing.T, f *caFixture) {
	notAfter := map[string]time.Time{}
	for _, n := range f.nodes() {
		c := f.ca.showCert(t, f.certs[n])
		if c.PublicKey != f.key(n) || !strings.HasPrefix(c.Verification, "ok") {
			t.Errorf("cert show %s: key %s verification %q, want %s ok", f.certs[n], c.PublicKey, c.Verification, f.key(n))
		}
		at, err := time.Parse(time.RFC3339, c.NotAfter)
		if err != nil {
			t.Fatalf("cert show: not_after %q: %v", c.NotAfter, err)
		}
		notAfter[c.PublicKey] = at
	}
	sameTime := func(s string, want time.Time) bool {
		at, err := time.Parse(time.RFC3339, s)
		return err == nil && at.Equal(want)
	}
	for _, n := range f.nodes() {
		st, err := caStatusOf(n)
		if err != nil {
			t.Fatal(err)
		}
		if st.Trust != "ca" {
			t.Errorf("%s: status trust %q, want ca", n.Name, st.Trust)
		}
		if !sameTime(st.Self.CertNotAfter, notAfter[f.key(n)]) {
			t.Errorf("%s: self.cert_not_after %q, certificate says %v", n.Name, st.Self.CertNotAfter, notAfter[f.key(n)])
		}
		for _, p := range st.Peers {
			if want, ok := notAfter[p.PublicKey]; ok && !sameTime(p.CertNotAfter, want) {
				t.Errorf("%s: peer %s cert_not_after %q, certificate says %v", n.Name, p.Name, p.CertNotAfter, want)
			}
		}
	}
}

// testCAUntrusted: two nodes with the cluster key join web1: "rogue" in
// open mode declaring role db (no certificate) and "alien" in CA mode with
// a certificate from another CA. Every CA node lists them as untrusted with
// the reason, never configures them in WireGuard and keeps them out of its
// sets; neither reaches even the "*" port tcp/7000 or ping, which a trusted
// node reaches. Policies the rogue spreads at higher versions (unsigned, and
// the signed v1 re-sent under a new number) change nothing.
func testCAUntrusted(t *testing.T, f *caFixture) {
	tc := f.tc.With(t)
	join := []string{f.web.GossipAddr()}
	rogue := tc.AddNode(harness.NodeSpec{Name: "rogue", Tags: role("db"), Join: join})
	// Open mode reads an unsigned policy; a higher version of it is pushed
	// below.
	if err := os.WriteFile(filepath.Join(rogue.Dir, "policy.yaml"), []byte(allowAllPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	other := newAuthority(t, t.TempDir())
	alien := tc.AddNode(harness.NodeSpec{Name: "alien", Tags: role("web"), Join: join,
		Set: map[string]any{"policy_file": ""}})
	other.trust(t, alien, role("web"))
	rpub, apub := tc.PublicKey(rogue), tc.PublicKey(alien)
	nodes := f.nodes()

	start := time.Now()
	tc.Start(rogue, alien)
	at, err := waitNodes(nodes, start, 20*time.Second,
		allOf(peerUntrusted(rpub, "no_certificate"), peerUntrusted(apub, "bad_certificate")))
	if err != nil {
		t.Fatalf("intruders not flagged: %v", err)
	}
	var worst time.Duration
	for _, d := range at {
		worst = max(worst, d)
	}
	t.Logf("TIMING every CA node lists rogue (no certificate) and alien (other CA) untrusted %v after they started", worst.Round(time.Millisecond))
	for _, n := range nodes {
		st := tc.Status(n)
		for _, pub := range []string{rpub, apub} {
			p, _ := st.Peer(pub)
			if len(p.Segments) > 0 {
				t.Errorf("%s: untrusted %s is in segments %v", n.Name, p.Name, p.Segments)
			}
			t.Logf("%s sees %s: %s (%s)", n.Name, p.Name, p.State, p.Reason)
		}
	}
	// The rogue (open mode) takes the CA nodes as WireGuard peers, so its
	// probes below really go out as handshake initiations.
	tc.WaitFor("rogue sees every CA node up and configures it in WireGuard", 20*time.Second, func() error {
		st, err := rogue.Status()
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if p, ok := st.Peer(f.key(n)); !ok || p.State != harness.StateUp {
				return fmt.Errorf("rogue sees %s as %q", n.Name, p.State)
			}
			if in, err := inWireGuard(rogue, f.key(n)); err != nil || !in {
				return fmt.Errorf("rogue's wg show lacks %s (%v)", n.Name, err)
			}
		}
		return nil
	})

	// A trusted node reaches tcp/7000 and ping on every node; the intruders
	// reach nothing.
	for _, dst := range []*harness.Node{f.app, f.db} {
		checkExpected(t, f.acl, f.web, []flowCase{{dst, "tcp", 7000, true}, {dst, "icmp", 0, true}})
	}
	var flows []flow
	for _, n := range nodes {
		flows = append(flows, tcpTo(f.addr4(n), 7000), tcpTo(f.addr6(n), 7000), icmpTo(f.addr4(n)), icmpTo(f.addr6(n)))
	}
	// The intruders are root on their nodes: their own egress checks are
	// off, the CA nodes' ingress stops them.
	bypassEgress(t, rogue)
	bypassEgress(t, alien)
	deniedFlows(t, rogue, flows...)
	deniedFlows(t, alien, flows...)

	// Nobody configured them, also after their handshake attempts, and the
	// sets hold only the trusted nodes.
	for _, n := range nodes {
		if err := allOf(notInWireGuard(rpub), notInWireGuard(apub), f.acl.setsMatch)(n); err != nil {
			t.Errorf("%s: %v", n.Name, err)
		}
	}

	// An unsigned policy from the rogue, at a version above the mesh's,
	// reaches the CA nodes by gossip and is dropped.
	before, err := policyOf(f.web)
	if err != nil {
		t.Fatal(err)
	}
	var pushed applied
	for pushed.version <= before.Version {
		pushed = applyPolicy(t, rogue, allowAllPolicy+fmt.Sprintf("# push %d\n", pushed.version))
	}
	t.Logf("rogue applied an unsigned policy v%d (mesh has v%d)", pushed.version, before.Version)
	// The signed v1 file handed to the open-mode rogue: it re-sends v1's
	// content and signature under its own next version number.
	if r := segmeshCLI(t, "policy", "apply", f.v1File, "--socket", rogue.Socket); r.code == 0 {
		t.Logf("rogue re-sends the signed v1 under its next version: %s", strings.TrimSpace(r.stdout))
	} else {
		t.Logf("rogue (open mode) did not take the signed v1 file: %v", r)
	}
	if err := holdsFor(nodes, 1500*time.Millisecond, allOf(hasPolicy(before.Version, before.Hash), f.acl.setsMatch)); err != nil {
		t.Errorf("after the rogue's policies: %v", err)
	}
	// Evidence that the documents did arrive (log wording is not a
	// contract, so this is only reported).
	for _, n := range nodes {
		b, _ := os.ReadFile(n.LogPath)
		t.Logf("%s logged %d rejected policy documents", n.Name, strings.Count(string(b), "policy document rejected"))
	}
	deniedFlows(t, rogue, tcpTo(f.addr4(f.app), 7000), tcpTo(f.addr4(f.app), 8080))
	tc.Stop(rogue)
	tc.Stop(alien)
}

// testCATagsFromCert: liar declares role db but its certificate (name web2)
// says role web. Everybody, liar included, sees it as web2 in segment web:
// it reaches web's port on app1 and no db-only port, and app1 and db1
// cannot reach it on db ports.
func testCATagsFromCert(t *testing.T, f *caFixture) {
	if len(f.acl.m.allows(role("db"), role("db"), "tcp", 5433)) == 0 {
		t.Fatal("test premise: the policy must allow db -> db tcp/5433")
	}
	for _, n := range f.nodes() {
		st := f.tc.Status(n)
		name, tags, segs := st.Self.Name, st.Self.Tags, st.Self.Segments
		if n != f.liar {
			p, ok := st.Peer(f.key(f.liar))
			if !ok {
				t.Errorf("%s does not list liar", n.Name)
				continue
			}
			name, tags, segs = p.Name, p.Tags, p.Segments
		}
		if name != "web2" || len(tags) != 1 || tags["role"] != "web" || !sameStrings(segs, []string{"web"}) {
			t.Errorf("%s sees liar as name %q, tags %v, segments %v; its certificate says web2, role=web (segment web)",
				n.Name, name, tags, segs)
		}
	}
	// liar is root on its node: with its egress check off, the receivers
	// judge it by its certificate.
	bypassEgress(t, f.liar)
	checkExpected(t, f.acl, f.liar, []flowCase{
		{f.app, "tcp", 8080, true}, {f.db, "tcp", 7000, true},
		{f.db, "tcp", 5433, false}, {f.db, "tcp", 5432, false}, {f.app, "tcp", 5432, false},
	})
	checkExpected(t, f.acl, f.app, []flowCase{{f.liar, "tcp", 5432, false}, {f.liar, "tcp", 7000, true}})
	checkExpected(t, f.acl, f.db, []flowCase{{f.liar, "tcp", 5433, false}})

	for _, n := range f.nodes() {
		if err := f.acl.setsMatch(n); err != nil {
			t.Errorf("%s: %v", n.Name, err)
		}
	}
}

// testCASignedPolicy: an unsigned apply and one signed by another CA are
// refused and change nothing; a `policy sign`ed v+1 applied on app1 and one
// applied with --sign-key on db1 are enforced everywhere within 2 s; the
// older signed files applied again are refused and change nothing.
func testCASignedPolicy(t *testing.T, f *caFixture) {
	nodes := f.nodes()
	before, err := policyOf(f.web)
	if err != nil {
		t.Fatal(err)
	}
	v2 := strings.Replace(caPolicy, "ports: [icmp, tcp/7000]", "ports: [icmp, tcp/7001]", 1)
	v3 := strings.Replace(caPolicy, "ports: [icmp, tcp/7000]", "ports: [icmp, tcp/7000, tcp/7001]", 1)
	if v2 == caPolicy || v3 == caPolicy {
		t.Fatal("test premise: base rule not found in caPolicy")
	}

	r := tryApply(t, f.web, v2)
	if r.code == 0 || strings.TrimSpace(r.stderr) == "" {
		t.Errorf("unsigned policy apply in CA mode: want a non-zero exit with a message: %v", r)
	} else {
		t.Logf("unsigned apply refused: exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	}
	other := newAuthority(t, t.TempDir())
	foreign, _ := other.sign(t, v2, before.Version+1)
	r = segmeshCLI(t, "policy", "apply", foreign, "--socket", f.web.Socket)
	if r.code == 0 || strings.TrimSpace(r.stderr) == "" {
		t.Errorf("policy signed by another CA: want a non-zero exit with a message: %v", r)
	} else {
		t.Logf("foreign-signed apply refused: exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	}
	if err := holdsFor(nodes, time.Second, allOf(hasPolicy(before.Version, before.Hash), f.acl.setsMatch)); err != nil {
		t.Errorf("after refused applies: %v", err)
	}

	v2File, _ := f.ca.sign(t, v2, before.Version+1)
	f.acl.setPolicy(t, v2)
	start := time.Now()
	r = segmeshCLI(t, "policy", "apply", v2File, "--socket", f.app.Socket)
	returned := time.Since(start)
	m := appliedRE.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("signed policy apply on app1: %v", r)
	}
	a2 := applied{hash: m[2], mode: m[3]}
	a2.version, _ = strconv.ParseInt(m[1], 10, 64)
	if a2.version != before.Version+1 {
		t.Errorf("signed apply gave v%d, the signature covers v%d", a2.version, before.Version+1)
	}
	at, err := waitNodes(nodes, start, 10*time.Second, allOf(hasPolicy(a2.version, a2.hash), f.acl.setsMatch))
	if err != nil {
		t.Errorf("after the signed apply: %v", err)
	}
	t.Logf("policy apply of a signed file on app1 returned after %v: v%d %s", returned.Round(time.Millisecond), a2.version, a2.hash)
	logPropagation(t, "signed policy (policy sign, then policy apply on app1)", at, nodes)
	checkExpected(t, f.acl, f.web, []flowCase{{f.app, "tcp", 7001, true}, {f.app, "tcp", 7000, false}})

	f.acl.setPolicy(t, v3)
	start = time.Now()
	a3 := applyPolicy(t, f.db, v3, "--sign-key", f.ca.key)
	if a3.version != a2.version+1 {
		t.Errorf("policy apply --sign-key gave v%d, want v%d", a3.version, a2.version+1)
	}
	at, err = waitNodes(nodes, start, 10*time.Second, allOf(hasPolicy(a3.version, a3.hash), f.acl.setsMatch))
	if err != nil {
		t.Errorf("after apply --sign-key: %v", err)
	}
	logPropagation(t, "policy apply --sign-key (on db1)", at, nodes)

	// Replays: the older signed documents, whatever node they are handed to.
	for i, old := range []string{f.v1File, v2File} {
		n := nodes[i%len(nodes)]
		r := segmeshCLI(t, "policy", "apply", old, "--socket", n.Socket)
		if r.code == 0 {
			t.Errorf("re-applying the older signed %s on %s succeeded: %v", filepath.Base(old), n.Name, r)
		} else {
			t.Logf("replay of %s on %s refused: exit %d: %s", filepath.Base(old), n.Name, r.code, strings.TrimSpace(r.stderr))
		}
	}
	if err := holdsFor(nodes, time.Second, allOf(hasPolicy(a3.version, a3.hash), f.acl.setsMatch)); err != nil {
		t.Errorf("after replaying older signed policies: %v", err)
	}
	checkExpected(t, f.acl, f.web, []flowCase{{f.app, "tcp", 7001, true}, {f.app, "tcp", 7000, true}})
}
