package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// matrixPolicy is the starting policy of TestACL: app1 is in two segments
// (app and ops), db2 is in none (its env does not match db's selector), and
// dns is a rule from "*" that makes every pair reachable on udp/53.
const matrixPolicy = `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db, env: prod}
  ops: {team: ops}
rules:
  - name: dns
    from: ["*"]
    to: ["*"]
    ports: [udp/53]
  - name: web-to-app
    from: [web]
    to: [app]
    ports: [tcp/8080, icmp]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: [tcp/5432, tcp/9000-9010, icmp]
  - name: ops-ssh
    from: [ops]
    to: ["*"]
    ports: [tcp/22, icmp]
tests:
  - {from: web, to: db, port: tcp/5432, expect: deny}
  - {from: app, to: db, port: tcp/9010, expect: allow}
  - {from: app, to: db, port: tcp/9011, expect: deny}
  - {from: ops, to: web, port: tcp/22, expect: allow}
`

// The ports every node serves in TestACL: inside and just outside the
// policy's ports and range.
var (
	probeTCP = []int{22, 5432, 8080, 8081, 8999, 9000, 9010, 9011}
	probeUDP = []int{53, 54}
)

// aclFixture is the five-node cluster TestACL's subtests share, with the
// tags and the policy the model expects to be in force.
type aclFixture struct {
	tc     *harness.TestCluster
	nodes  []*harness.Node
	byName map[string]*harness.Node
	self   map[*harness.Node]*harness.Status // addresses and keys
	mu     sync.Mutex
	tags   map[*harness.Node]map[string]string
	policy string
	m      model
}

func (f *aclFixture) setPolicy(t *testing.T, content string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policy, f.m = content, parseModel(t, content)
}

func (f *aclFixture) setTags(n *harness.Node, tags map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tags[n] = tags
}

// snapshot returns the model and every node as the model sees it.
func (f *aclFixture) snapshot() (model, map[*harness.Node]member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms := map[*harness.Node]member{}
	for _, n := range f.nodes {
		st := f.self[n].Self
		ms[n] = member{name: n.Name, addr4: netip.MustParseAddr(st.Address), addr6: netip.MustParseAddr(st.Address6), tags: f.tags[n]}
	}
	return f.m, ms
}

// setsMatch is a waitNodes condition: n's nftables sets are the ones the
// model computes for the current policy and tags.
func (f *aclFixture) setsMatch(n *harness.Node) error {
	m, ms := f.snapshot()
	var peers []member
	for _, o := range f.nodes {
		peers = append(peers, ms[o])
	}
	want := m.expectedSets(ms[n], peers)
	got, err := segmeshSets(n.Namespace)
	if err != nil {
		return err
	}
	if d := want.diff(got); d != "" {
		return fmt.Errorf("sets differ from the model: %s", d)
	}
	return nil
}

// expect gives the model's verdict for a flow from src to dst.
func (f *aclFixture) expect(src, dst *harness.Node, proto string, port int) bool {
	m, ms := f.snapshot()
	return len(m.allows(ms[src].tags, ms[dst].tags, proto, port)) > 0
}

// addr returns n's overlay address of the family.
func (f *aclFixture) addr(n *harness.Node, v6 bool) netip.Addr {
	if v6 {
		return netip.MustParseAddr(f.self[n].Self.Address6)
	}
	return netip.MustParseAddr(f.self[n].Self.Address)
}

// checkFlows probes flows from src and fails for every result that is not
// ok for an expected allow or deniedResult for an expected deny. It returns the
// number of allowed and denied flows checked.
func checkFlows(t *testing.T, src *harness.Node, flows []flow, want map[flow]bool) (allowed, denied int) {
	t.Helper()
	if _, ok := bypassed.Load(src.Namespace); ok {
		flushOutput(t, src)
	}
	res, err := probeFlows(src.Namespace, denyTimeout, flows)
	if err != nil {
		t.Errorf("%s: %v", src.Name, err)
	}
	for _, fl := range flows {
		exp := deniedResult(src, fl)
		if want[fl] {
			exp = resOK
			allowed++
		} else {
			denied++
		}
		if got := res[fl]; got != exp {
			t.Errorf("%s -> %s: %q, want %q (policy %s)", src.Name, fl, got, exp, verdictWord(want[fl]))
		}
	}
	return allowed, denied
}

func verdictWord(allow bool) string {
	if allow {
		return "allows"
	}
	return "denies"
}

// flowsTo lists a flow per probe port (and icmp) to both of dst's
// addresses, with the model's verdict from src.
func (f *aclFixture) flowsTo(src, dst *harness.Node, flows []flow, want map[flow]bool) []flow {
	for _, v6 := range []bool{false, true} {
		a := f.addr(dst, v6)
		for _, p := range probeTCP {
			fl := flow{"tcp", a, p}
			flows, want[fl] = append(flows, fl), f.expect(src, dst, "tcp", p)
		}
		for _, p := range probeUDP {
			fl := flow{"udp", a, p}
			flows, want[fl] = append(flows, fl), f.expect(src, dst, "udp", p)
		}
		fl := flow{"icmp", a, 0}
		flows, want[fl] = append(flows, fl), f.expect(src, dst, "icmp", 0)
	}
	return flows
}

// TestACL runs the segment ACL checks on one five-node cluster, in order:
// the allow/deny matrix, a tag change, a policy apply, an established flow
// cut by a policy change, audit mode, and the host's own nftables table
// surviving all of it and a graceful stop.
func TestACL(t *testing.T) {
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: matrixPolicy})
	f := &aclFixture{tc: tc, byName: map[string]*harness.Node{}, self: map[*harness.Node]*harness.Status{},
		tags: map[*harness.Node]map[string]string{}}
	f.setPolicy(t, matrixPolicy)
	specs := []struct {
		name string
		tags map[string]string
	}{
		{"web1", map[string]string{"role": "web"}},
		{"app1", map[string]string{"role": "app", "team": "ops"}},
		{"app2", map[string]string{"role": "app"}},
		{"db1", map[string]string{"role": "db", "env": "prod"}},
		{"db2", map[string]string{"role": "db", "env": "dev"}},
	}
	for i, s := range specs {
		spec := harness.NodeSpec{Name: s.name, Tags: s.tags}
		if i > 0 {
			spec.Join = []string{f.nodes[0].GossipAddr()}
		}
		n := tc.AddNode(spec)
		f.nodes = append(f.nodes, n)
		f.byName[s.name] = n
		f.tags[n] = s.tags
	}
	hostfw := setupHostFirewall(t, f.byName["web1"])

	start := time.Now()
	tc.Start(f.nodes...)
	tc.WaitMesh(meshTimeout, f.nodes...)
	for _, n := range f.nodes {
		f.self[n] = tc.Status(n)
		startServer(t, tc, n.Namespace, "serve-"+n.Name, probeTCP, probeUDP)
	}
	// Every node proposed the same policy_file at start; they settle on one
	// document and enforce it.
	want := tc.Status(f.nodes[0]).Policy
	tc.WaitFor("one policy everywhere, enforced as the model says", 20*time.Second, func() error {
		p, err := policyOf(f.nodes[0])
		if err != nil {
			return err
		}
		want = p
		if p.Version < 1 || p.Mode != "enforce" {
			return fmt.Errorf("%s: policy %+v", f.nodes[0].Name, p)
		}
		for _, n := range f.nodes {
			if err := hasPolicy(p.Version, p.Hash)(n); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
			if err := f.setsMatch(n); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
		}
		return nil
	})
	t.Logf("TIMING 5 nodes with policy_file: start -> one policy (v%d) enforced everywhere: %v",
		want.Version, time.Since(start).Round(time.Millisecond))
	checkHostFirewall(t, f.byName["web1"], hostfw, "after start")

	t.Run("matrix", func(t *testing.T) { testMatrix(t, f) })
	t.Run("tag change and reload", func(t *testing.T) { testTagChange(t, f) })
	t.Run("policy apply", func(t *testing.T) { testPolicyApply(t, f) })
	t.Run("established flow cut", func(t *testing.T) { testFlowCut(t, f) })
	t.Run("audit mode", func(t *testing.T) { testAuditMode(t, f) })
	t.Run("host table untouched and graceful stop", func(t *testing.T) {
		web1 := f.byName["web1"]
		checkHostFirewall(t, web1, hostfw, "after the policy changes")
		tc.With(t).Stop(web1)
		if code, _ := web1.ExitCode(); code != 0 {
			t.Errorf("web1 exited with code %d after SIGTERM, want 0", code)
		}
		checkHostFirewall(t, web1, hostfw, "after a graceful stop")
		if ok, err := hasTable(web1.Namespace, "inet", "segmesh"); err != nil || ok {
			t.Errorf("table inet segmesh still present after a graceful stop (err %v)", err)
		}
	})
}

// testMatrix: every pair is first shown reachable (udp/53 is allowed from
// "*"), then every probe port, udp port and ping, over IPv4 and IPv6, is
// checked against the model: allowed flows connect, denied ones time out.
func testMatrix(t *testing.T, f *aclFixture) {
	// The servers answer locally on every port: a timeout below is the
	// firewall, not a missing listener.
	for _, n := range f.nodes {
		var flows []flow
		want := map[flow]bool{}
		for _, v6 := range []bool{false, true} {
			for _, p := range probeTCP {
				fl := flow{"tcp", f.addr(n, v6), p}
				flows, want[fl] = append(flows, fl), true
			}
			for _, p := range probeUDP {
				fl := flow{"udp", f.addr(n, v6), p}
				flows, want[fl] = append(flows, fl), true
			}
		}
		checkFlows(t, n, flows, want)
	}

	start := time.Now()
	var wg sync.WaitGroup
	for _, src := range f.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pending []flow
			for _, dst := range f.nodes {
				if dst != src {
					pending = append(pending, flow{"udp", f.addr(dst, false), 53}, flow{"udp", f.addr(dst, true), 53})
				}
			}
			err := harness.WaitFor(15*time.Second, func() error {
				res, err := probeFlows(src.Namespace, 500*time.Millisecond, pending)
				if err != nil {
					return err
				}
				var still []flow
				for _, fl := range pending {
					if res[fl] != resOK {
						still = append(still, fl)
					}
				}
				pending = still
				if len(pending) > 0 {
					return fmt.Errorf("%s cannot reach %v", src.Name, pending)
				}
				return nil
			})
			if err != nil {
				t.Errorf("reachability on the allowed udp/53: %v", err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("every ordered pair reachable over IPv4 and IPv6 (udp/53, rule dns from \"*\") after %v", time.Since(start).Round(time.Millisecond))

	// app2 plays root on its own node: with its egress check off, its
	// denied flows reach the receivers and test their ingress; every other
	// node's are refused by its own egress.
	bypassEgress(t, f.byName["app2"])
	start = time.Now()
	var mu sync.Mutex
	allowed, denied := 0, 0
	for _, src := range f.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var flows []flow
			want := map[flow]bool{}
			for _, dst := range f.nodes {
				if dst != src {
					flows = f.flowsTo(src, dst, flows, want)
				}
			}
			a, d := checkFlows(t, src, flows, want)
			mu.Lock()
			allowed, denied = allowed+a, denied+d
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("matrix: %d flows allowed and connected, %d denied (refused by the sender, or dropped by the receiver from app2) (tcp %v, udp %v, icmp; IPv4 and IPv6) in %v",
		allowed, denied, probeTCP, probeUDP, time.Since(start).Round(time.Millisecond))
	if allowed == 0 || denied == 0 {
		t.Errorf("matrix without both verdicts: %d allowed, %d denied", allowed, denied)
	}

	// policy explain agrees with the model; FROM/TO as names, keys or IPs.
	web1, app1, db1, db2 := f.byName["web1"], f.byName["app1"], f.byName["db1"], f.byName["db2"]
	cases := []struct {
		on       *harness.Node
		src, dst *harness.Node
		from, to string
		port     string
		proto    string
		portNum  int
	}{
		{db2, web1, app1, "web1", "app1", "tcp/8080", "tcp", 8080},
		{web1, app1, db1, f.self[app1].Self.Address, f.self[db1].Self.PublicKey, "tcp/22", "tcp", 22},
		{app1, app1, db2, "app1", f.self[db2].Self.Address6, "tcp/5432", "tcp", 5432},
		{db1, web1, db1, "web1", "db1", "icmp", "icmp", 0},
	}
	m, ms := f.snapshot()
	for _, c := range cases {
		e := explain(t, c.on, c.from, c.to, c.port)
		rules := m.allows(ms[c.src].tags, ms[c.dst].tags, c.proto, c.portNum)
		verdict := "deny"
		if len(rules) > 0 {
			verdict = "allow"
		}
		sort.Strings(e.Rules)
		sort.Strings(rules)
		fromSegs, toSegs := m.segmentsOf(ms[c.src].tags), m.segmentsOf(ms[c.dst].tags)
		if e.Verdict != verdict || e.From != c.src.Name || e.To != c.dst.Name ||
			!sameStrings(e.FromSegments, fromSegs) || !sameStrings(e.ToSegments, toSegs) || !sameStrings(e.Rules, rules) {
			t.Errorf("policy explain %s %s %s on %s: %+v; the model says %s %s->%s segments %v -> %v, rules %v",
				c.from, c.to, c.port, c.on.Name, e, verdict, c.src.Name, c.dst.Name, fromSegs, toSegs, rules)
		} else {
			t.Logf("policy explain %s -> %s %s on %s: %s by %v (segments %v -> %v), as the model says",
				c.src.Name, c.dst.Name, c.port, c.on.Name, e.Verdict, e.Rules, e.FromSegments, e.ToSegments)
		}
	}
}

// sameStrings compares as sets of strings, nil equal to empty.
func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}
