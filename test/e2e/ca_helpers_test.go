package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// caPolicy is the starting policy of the CA tests. Every admitted node may
// ping and reach tcp/7000 on every other; web reaches app on tcp/8080, app
// reaches db on tcp/5432, and tcp/5433 is db-only (db -> db), so a node
// that only claims role db is caught by it.
const caPolicy = `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
rules:
  - name: base
    from: ["*"]
    to: ["*"]
    ports: [icmp, tcp/7000]
  - name: web-to-app
    from: [web]
    to: [app]
    ports: [tcp/8080]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: [tcp/5432]
  - name: db-replication
    from: [db]
    to: [db]
    ports: [tcp/5433]
`

// caTCP are the TCP ports every CA node's echo server listens on.
var caTCP = []int{5432, 5433, 7000, 7001, 8080}

// authority is a mesh CA made by `segmesh ca init`.
type authority struct {
	dir string
	key string // DIR/ca.key
	pub string // DIR/ca.pub, the nodes' trust.ca_file
}

// newAuthority runs `segmesh ca init --dir dir` and checks what it wrote.
func newAuthority(t *testing.T, dir string) *authority {
	t.Helper()
	if r := segmeshCLI(t, "ca", "init", "--dir", dir); r.code != 0 {
		t.Fatalf("%v", r)
	}
	a := &authority{dir: dir, key: filepath.Join(dir, "ca.key"), pub: filepath.Join(dir, "ca.pub")}
	st, err := os.Stat(a.key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("ca init: %s has mode %v, want 0600", a.key, st.Mode().Perm())
	}
	if _, err := os.Stat(a.pub); err != nil {
		t.Fatal(err)
	}
	return a
}

// issue writes a certificate for n's key (name from n's config unless
// extra names one) with tags to n.Dir/node.crt and returns its path.
func (a *authority) issue(t *testing.T, n *harness.Node, tags map[string]string, extra ...string) string {
	t.Helper()
	out := filepath.Join(n.Dir, "node.crt")
	args := []string{"cert", "issue", "--ca-key", a.key, "--tags", formatTagList(tags), "--out", out, "--force"}
	if !slices.Contains(extra, "--public-key") {
		args = append(args, "--config", n.ConfigPath)
	}
	if r := segmeshCLI(t, append(args, extra...)...); r.code != 0 {
		t.Fatalf("%v", r)
	}
	return out
}

// trust issues n a certificate with tags and puts n in CA mode: trust.ca_file
// is this CA's public key, trust.cert_file the certificate.
func (a *authority) trust(t *testing.T, n *harness.Node, tags map[string]string, extra ...string) string {
	t.Helper()
	cert := a.issue(t, n, tags, extra...)
	if err := harness.EditConfig(n.ConfigPath, map[string]any{
		"trust": map[string]any{"ca_file": a.pub, "cert_file": cert},
	}); err != nil {
		t.Fatal(err)
	}
	return cert
}

// sign runs `segmesh policy sign` on content for version and returns the
// path of the signed file (in the CA's directory) and its content.
func (a *authority) sign(t *testing.T, content string, version int64) (string, string) {
	t.Helper()
	in := filepath.Join(a.dir, fmt.Sprintf("policy-v%d.yaml", version))
	if err := os.WriteFile(in, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(a.dir, fmt.Sprintf("policy-v%d.signed.yaml", version))
	r := segmeshCLI(t, "policy", "sign", in, "--key", a.key, "--version", strconv.FormatInt(version, 10), "--out", out)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "segmesh-signature:") {
		t.Fatalf("policy sign wrote no signature line:\n%s", b)
	}
	return out, string(b)
}

// certInfo is the part of `segmesh cert show --json` the tests read.
type certInfo struct {
	Serial       string            `json:"serial"`
	Name         string            `json:"name"`
	PublicKey    string            `json:"public_key"`
	Tags         map[string]string `json:"tags"`
	NotAfter     string            `json:"not_after"`
	Verification string            `json:"verification"`
}

// showCert runs `segmesh cert show FILE --ca PUB --json`.
func (a *authority) showCert(t *testing.T, file string) certInfo {
	t.Helper()
	r := segmeshCLI(t, "cert", "show", file, "--ca", a.pub, "--json")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var c certInfo
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		t.Fatalf("cert show --json: %v: %s", err, r.stdout)
	}
	return c
}

// formatTagList renders tags as k=v,k=v for --tags.
func formatTagList(tags map[string]string) string {
	var parts []string
	for k, v := range tags {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

// caStatus is the CA-mode part of `status --json` (extensions of the
// contract the harness's Status does not decode).
type caStatus struct {
	Trust string `json:"trust"`
	Self  struct {
		CertNotAfter string `json:"cert_not_after"`
	} `json:"self"`
	Peers []struct {
		Name            string `json:"name"`
		PublicKey       string `json:"public_key"`
		State           string `json:"state"`
		CertNotAfter    string `json:"cert_not_after"`
		CertExpiresSoon bool   `json:"cert_expires_soon"`
	} `json:"peers"`
}

// caStatusOf decodes n's `status --json` as caStatus.
func caStatusOf(n *harness.Node) (*caStatus, error) {
	out, err := n.StatusOutput("--json")
	if err != nil {
		return nil, err
	}
	var s caStatus
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("node %s: decode status --json: %w", n.Name, err)
	}
	return &s, nil
}

// untrustedAs is a peerCond: the peer is listed as untrusted with a reason
// starting with want (e.g. "no_certificate").
func untrustedAs(want string) peerCond {
	return func(p harness.StatusPeer, ok bool) error {
		switch {
		case !ok:
			return fmt.Errorf("not listed")
		case p.State != harness.StateUntrusted:
			return fmt.Errorf("state %q (reason %q, segments %v)", p.State, p.Reason, p.Segments)
		case !strings.HasPrefix(p.Reason, want):
			return fmt.Errorf("untrusted with reason %q, want %s", p.Reason, want)
		}
		return nil
	}
}

// peerUntrusted is a waitNodes condition on n's status for the peer pub.
func peerUntrusted(pub, want string) func(*harness.Node) error {
	cond := untrustedAs(want)
	return func(n *harness.Node) error {
		st, err := n.Status()
		if err != nil {
			return err
		}
		p, ok := st.Peer(pub)
		return cond(p, ok)
	}
}

// notInWireGuard is a waitNodes condition: n's `wg show` does not list pub.
func notInWireGuard(pub string) func(*harness.Node) error {
	return func(n *harness.Node) error {
		in, err := inWireGuard(n, pub)
		if err != nil {
			return err
		}
		if in {
			return fmt.Errorf("wg show %s lists %s", n.Interface, pub)
		}
		return nil
	}
}

// allOf combines waitNodes conditions.
func allOf(conds ...func(*harness.Node) error) func(*harness.Node) error {
	return func(n *harness.Node) error {
		for _, c := range conds {
			if err := c(n); err != nil {
				return err
			}
		}
		return nil
	}
}

// subFixture is an aclFixture over some of f's nodes (those still trusted),
// sharing f's addresses, tags and policy.
func subFixture(f *aclFixture, nodes ...*harness.Node) *aclFixture {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := &aclFixture{tc: f.tc, nodes: nodes, byName: map[string]*harness.Node{}, self: f.self,
		tags: map[*harness.Node]map[string]string{}, policy: f.policy, m: f.m}
	for _, n := range nodes {
		g.byName[n.Name] = n
		g.tags[n] = f.tags[n]
	}
	return g
}

// deniedFlows probes every flow from src and fails for each that does not
// time out.
func deniedFlows(t *testing.T, src *harness.Node, flows ...flow) {
	t.Helper()
	want := map[flow]bool{}
	checkFlows(t, src, flows, want)
}

// tcpTo and icmpTo build flows to an overlay address.
func tcpTo(addr string, port int) flow { return flow{"tcp", netip.MustParseAddr(addr), port} }
func icmpTo(addr string) flow          { return flow{"icmp", netip.MustParseAddr(addr), 0} }

// stallAfter waits until stream s has printed nothing for a second and
// returns when its last echo arrived.
func stallAfter(tc *harness.TestCluster, s *harness.Proc, what string) time.Time {
	var last time.Time
	tc.WaitFor(what, 10*time.Second, func() error {
		ts := echoTimes(s.Output())
		if len(ts) == 0 {
			return harness.Abort(fmt.Errorf("no echo at all: %s", s.Output()))
		}
		last = ts[len(ts)-1]
		if quiet := time.Since(last); quiet < time.Second {
			return fmt.Errorf("last echo %v ago", quiet.Round(time.Millisecond))
		}
		return nil
	})
	return last
}

// startStream runs `segmesh-probe stream` from src to target and waits for
// ten echoes.
func startStream(tc *harness.TestCluster, src *harness.Node, name, target string) *harness.Proc {
	s := tc.Spawn(src.Namespace, name, bins.Probe, "stream", "-interval", "50ms", target)
	tc.WaitFor(name+" echoes", 10*time.Second, func() error {
		if err := s.ExitError(); err != nil {
			return harness.Abort(fmt.Errorf("%w: %s", err, s.Output()))
		}
		if n := len(echoTimes(s.Output())); n < 10 {
			return fmt.Errorf("%d echoes so far", n)
		}
		return nil
	})
	return s
}
