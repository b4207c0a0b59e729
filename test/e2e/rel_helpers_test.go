package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// The reliability tests (rel_*_test.go): crash and restart, partition and
// heal, seed loss, churn and soak. Their TIMING lines feed
// docs/reliability.md. The long ones only run with SEGMESH_SOAK=1 (make
// soak).

// relPolicyV1 is the policy_file of the reliability clusters: web reaches
// app on tcp/8080, ping is open.
const relPolicyV1 = `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
rules:
  - {name: web-to-app, from: [web], to: [app], ports: [tcp/8080]}
  - {name: ping, from: ["*"], to: ["*"], ports: [icmp]}
`

// relPolicyV2 widens web -> app to tcp/8080-8081 and adds app -> db
// tcp/5432, so a node enforcing v1 instead has different elements.
const relPolicyV2 = `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
rules:
  - {name: web-to-app, from: [web], to: [app], ports: [tcp/8080, tcp/8081]}
  - {name: app-to-db, from: [app], to: [db], ports: [tcp/5432]}
  - {name: ping, from: ["*"], to: ["*"], ports: [icmp]}
`

// relPolicyV3 moves app -> db to tcp/5433.
const relPolicyV3 = `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
rules:
  - {name: web-to-app, from: [web], to: [app], ports: [tcp/8080, tcp/8081]}
  - {name: app-to-db, from: [app], to: [db], ports: [tcp/5433]}
  - {name: ping, from: ["*"], to: ["*"], ports: [icmp]}
`

// relStreamPort is the port the reliability streams use (web -> app).
const relStreamPort = 8080

// relSoakEnv must be "1" for the soak tests to run.
const relSoakEnv = "SEGMESH_SOAK"

// relRequireSoak skips a soak test unless SEGMESH_SOAK=1 (make soak).
func relRequireSoak(t *testing.T) {
	t.Helper()
	if os.Getenv(relSoakEnv) != "1" {
		t.Skipf("soak test: runs only with %s=1 (make soak)", relSoakEnv)
	}
}

// relSoakDuration is SOAK_DURATION (a Go duration), default 10m.
func relSoakDuration(t *testing.T) time.Duration {
	t.Helper()
	s := os.Getenv("SOAK_DURATION")
	if s == "" {
		return 10 * time.Minute
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("SOAK_DURATION=%q: want a positive Go duration such as 10m", s)
	}
	return d
}

// newRelFixture makes a cluster (policy_file relPolicyV1 on every node, the
// given dead_peer_grace) and a fixture whose model follows relPolicyV1.
func newRelFixture(t *testing.T, deadPeerGrace time.Duration) *aclFixture {
	t.Helper()
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: deadPeerGrace, Policy: relPolicyV1})
	f := &aclFixture{tc: tc, byName: map[string]*harness.Node{}, self: map[*harness.Node]*harness.Status{},
		tags: map[*harness.Node]map[string]string{}}
	f.setPolicy(t, relPolicyV1)
	if dir := os.Getenv(relKeepLogsEnv); dir != "" {
		// Registered after the cluster's cleanup, so it runs before it.
		t.Cleanup(func() { relKeepLogs(t, f, filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))) })
	}
	return f
}

// relKeepLogsEnv names a directory where the reliability tests copy every
// node's log when they end (for reading a soak run afterwards).
const relKeepLogsEnv = "REL_KEEP_LOGS"

// relKeepLogs copies every node's log into dir.
func relKeepLogs(t *testing.T, f *aclFixture, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("%s: %v", relKeepLogsEnv, err)
		return
	}
	for _, n := range f.tc.C.Nodes() {
		b, err := os.ReadFile(n.LogPath)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, n.Name+".log"), b, 0o644)
		}
		if err != nil {
			t.Logf("%s: %s: %v", relKeepLogsEnv, n.Name, err)
		}
	}
	t.Logf("node logs copied to %s", dir)
}

// relAdd adds a node to the fixture joining through the seeds.
func relAdd(f *aclFixture, name string, tags map[string]string, seeds ...*harness.Node) *harness.Node {
	return relAddSet(f, name, tags, nil, seeds...)
}

// relAddSet is relAdd with extra config keys.
func relAddSet(f *aclFixture, name string, tags map[string]string, set map[string]any, seeds ...*harness.Node) *harness.Node {
	spec := harness.NodeSpec{Name: name, Tags: tags, Set: set}
	for _, s := range seeds {
		spec.Join = append(spec.Join, s.GossipAddr())
	}
	n := f.tc.AddNode(spec)
	f.mu.Lock()
	f.nodes = append(f.nodes, n)
	f.byName[name] = n
	f.tags[n] = tags
	f.mu.Unlock()
	return n
}

// relStart starts the fixture's nodes, waits for the full mesh and one
// policy enforced as the model says everywhere, and records every node's
// own status. It returns the active policy.
func relStart(t *testing.T, f *aclFixture) harness.StatusPolicy {
	t.Helper()
	start := time.Now()
	f.tc.Start(f.nodes...)
	f.tc.WaitMesh(meshTimeout, f.nodes...)
	for _, n := range f.nodes {
		f.self[n] = f.tc.Status(n)
	}
	var want harness.StatusPolicy
	f.tc.WaitFor("one policy everywhere, enforced as the model says", 20*time.Second, func() error {
		p, err := policyOf(f.nodes[0])
		if err != nil {
			return err
		}
		if p.Version < 1 {
			return fmt.Errorf("%s: no policy yet", f.nodes[0].Name)
		}
		want = p
		return holdsFor(f.nodes, 0, both(hasPolicy(p.Version, p.Hash), relSetsMatch(f)))
	})
	t.Logf("%d nodes up with policy v%d after %v", len(f.nodes), want.Version, time.Since(start).Round(time.Millisecond))
	return want
}

// relApply applies content on n, sets the model to it and waits until the
// nodes enforce it as the model says with the nodes the membership. It
// returns what apply reported.
func relApply(t *testing.T, f *aclFixture, n *harness.Node, content string, nodes ...*harness.Node) applied {
	t.Helper()
	f.setPolicy(t, content)
	start := time.Now()
	a := applyPolicy(t, n, content)
	if _, err := waitNodes(nodes, start, 10*time.Second, both(hasPolicy(a.version, a.hash), relSetsAmong(f, nodes))); err != nil {
		t.Fatalf("policy v%d from %s: %v", a.version, n.Name, err)
	}
	return a
}

// relAddr is n's overlay address of the family with a port.
func relAddr(f *aclFixture, n *harness.Node, v6 bool, port int) string {
	return netip.AddrPortFrom(f.addr(n, v6), uint16(port)).String()
}

// relStream starts a segmesh-probe stream from src to target (every 50 ms)
// and waits until it has echoed 10 lines.
func relStream(t *testing.T, tc *harness.TestCluster, src *harness.Node, name, target string) *harness.Proc {
	t.Helper()
	// The connect may wait for the pair's first handshake (see pingTimeout).
	s := tc.Spawn(src.Namespace, name, bins.Probe, "stream", "-interval", "50ms", "-timeout", pingTimeout.String(), target)
	tc.WaitFor(name+" echoes", 15*time.Second, func() error {
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

// relSameConnection fails unless the stream still runs on the connection
// it opened first (one "connected" line, no "error" line).
func relSameConnection(s *harness.Proc) error {
	if err := s.ExitError(); err != nil {
		return fmt.Errorf("the stream ended: %w: %s", err, relLastLines(s.Output(), 3))
	}
	out := s.Output()
	if c := strings.Count(out, "connected "); c != 1 {
		return fmt.Errorf("the stream connected %d times", c)
	}
	if strings.Contains(out, "\nerror ") || strings.HasPrefix(out, "error ") {
		return fmt.Errorf("the stream reported an error: %s", relLastLines(out, 3))
	}
	return nil
}

// relLastLines returns the last n lines of s.
func relLastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// relStalled waits until the stream has echoed nothing for quiet (the flow
// is really cut) and returns its last echo.
func relStalled(tc *harness.TestCluster, s *harness.Proc, what string, quiet, timeout time.Duration) time.Time {
	var last time.Time
	tc.WaitFor(what, timeout, func() error {
		if err := relSameConnection(s); err != nil {
			return harness.Abort(err)
		}
		ts := echoTimes(s.Output())
		last = ts[len(ts)-1]
		if q := time.Since(last); q < quiet {
			return fmt.Errorf("last echo %v ago", q.Round(time.Millisecond))
		}
		return nil
	})
	return last
}

// relResumed waits until the stream has echoed again, 5 times, after
// since, on the same connection, and returns the first such echo's time.
func relResumed(tc *harness.TestCluster, s *harness.Proc, what string, since time.Time, timeout time.Duration) time.Time {
	var first time.Time
	tc.WaitFor(what, timeout, func() error {
		if err := relSameConnection(s); err != nil {
			return harness.Abort(err)
		}
		var after []time.Time
		for _, e := range echoTimes(s.Output()) {
			if e.After(since) {
				after = append(after, e)
			}
		}
		if len(after) < 5 {
			return fmt.Errorf("%d echoes in the %v since", len(after), time.Since(since).Round(time.Millisecond))
		}
		first = after[0]
		return nil
	})
	return first
}

// relFirstStatus polls n's status from the moment it was started until the
// daemon answers, and returns that first answer.
func relFirstStatus(tc *harness.TestCluster, n *harness.Node, timeout time.Duration) *harness.Status {
	var first *harness.Status
	tc.WaitFor(n.Name+" answers status", timeout, func() error {
		if err := n.ExitError(); err != nil {
			return harness.Abort(err)
		}
		st, err := n.Status()
		if err != nil {
			return err
		}
		first = st
		return nil
	})
	return first
}

// relPeersUp lists the names of the peers a status shows up.
func relPeersUp(st *harness.Status) []string {
	var up []string
	for _, p := range st.Peers {
		if p.State == harness.StateUp {
			up = append(up, p.Name)
		}
	}
	return up
}

// relWGKeys runs `wg show IF dump` in n's namespace and returns every peer
// line's public key, in order, duplicates kept.
func relWGKeys(n *harness.Node) ([]string, error) {
	out, err := n.Exec("wg", "show", n.Interface, "dump")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var keys []string
	for _, l := range lines[1:] { // the first line is the interface
		if f := strings.Fields(l); len(f) > 0 {
			keys = append(keys, f[0])
		}
	}
	return keys, nil
}

// relPeersExactly is a waitNodes condition: n's status lists each of the
// other nodes of want once, up, and nobody else; `wg show` lists each of
// them once and nobody else.
func relPeersExactly(f *aclFixture, want []*harness.Node) func(*harness.Node) error {
	return func(n *harness.Node) error {
		wantKeys := map[string]string{}
		for _, o := range want {
			if o != n {
				wantKeys[f.self[o].Self.PublicKey] = o.Name
			}
		}
		st, err := n.Status()
		if err != nil {
			return err
		}
		var problems []string
		seen := map[string]int{}
		for _, p := range st.Peers {
			seen[p.PublicKey]++
			name, ok := wantKeys[p.PublicKey]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("status lists unexpected peer %s (%s, %s)", p.Name, p.PublicKey, p.State))
			case p.State != harness.StateUp:
				problems = append(problems, fmt.Sprintf("status shows %s %q", name, p.State))
			}
		}
		wgKeys, err := relWGKeys(n)
		if err != nil {
			return err
		}
		wgSeen := map[string]int{}
		for _, k := range wgKeys {
			wgSeen[k]++
			if _, ok := wantKeys[k]; !ok {
				problems = append(problems, "wg show lists unexpected peer "+k)
			}
		}
		for k, name := range wantKeys {
			if seen[k] != 1 {
				problems = append(problems, fmt.Sprintf("status lists %s %d times", name, seen[k]))
			}
			if wgSeen[k] != 1 {
				problems = append(problems, fmt.Sprintf("wg show lists %s %d times", name, wgSeen[k]))
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("%s", strings.Join(problems, "; "))
		}
		return nil
	}
}

// relTableCount counts the tables FAMILY NAME in ns (nft cannot hold two of a
// name, so anything but 1 means missing).
func relTableCount(ns, family, name string) (int, error) {
	objs, err := nftObjects(ns, "list", "tables")
	if err != nil {
		return 0, err
	}
	count := 0
	for _, o := range objs {
		if raw, ok := o["table"]; ok {
			var t struct {
				Family string `json:"family"`
				Name   string `json:"name"`
			}
			if err := json.Unmarshal(raw, &t); err == nil && t.Family == family && t.Name == name {
				count++
			}
		}
	}
	return count, nil
}

// relTableLayout describes table inet segmesh in n's namespace without its
// state: every chain (type, hook, priority, policy), every rule of every
// chain in order (expressions, counters zeroed), every set's definition
// (no elements) and every named counter; n's interface name reads "IF". Two
// nodes of one version must have equal layouts; a duplicated rule or set
// shows as a difference. rules counts the rules.
func relTableLayout(n *harness.Node) (layout []string, rules int, err error) {
	objs, err := nftObjects(n.Namespace, "list", "table", "inet", "segmesh")
	if err != nil {
		return nil, 0, err
	}
	for _, o := range objs {
		for kind, raw := range o {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, 0, fmt.Errorf("decode %s: %w", kind, err)
			}
			delete(m, "handle")
			// Identity chains and their sets (id_N, id_N_p, id_N_r, id_N_s4,
			// id_N_s6) and the dispatch rules of chains src4 and src6 come
			// and go with the peers a node has: the layout is the rest.
			// So do the egress objects of the node's own identities
			// (out_node, wl_NAME and their sets, the destination sets
			// dst_D_4/6) and the cgroup dispatch of chain mesh_out.
			if name, _ := m["name"].(string); strings.HasPrefix(name, "id_") || relEgressState(name) {
				continue
			}
			if chain, _ := m["chain"].(string); strings.HasPrefix(chain, "id_") || relEgressState(chain) ||
				(kind == "rule" && (chain == "src4" || chain == "src6" || chain == "mesh_out")) {
				continue
			}
			switch kind {
			case "set", "map":
				delete(m, "elem")
			case "counter":
				delete(m, "packets")
				delete(m, "bytes")
			case "rule":
				rules++
				relZeroCounters(m)
			}
			b, err := json.Marshal(m)
			if err != nil {
				return nil, 0, err
			}
			s := strings.ReplaceAll(string(b), `"`+n.Interface+`"`, `"IF"`)
			layout = append(layout, kind+" "+s)
		}
	}
	return layout, rules, nil
}

// relEgressState reports whether a chain or set name is an egress object
// that follows the node's identities and peers.
func relEgressState(name string) bool {
	return strings.HasPrefix(name, "out_node") || strings.HasPrefix(name, "wl_") || strings.HasPrefix(name, "dst_")
}

// relZeroCounters replaces the packet and byte counts inside anonymous counter
// expressions of a decoded rule.
func relZeroCounters(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "counter" {
				if c, ok := e.(map[string]any); ok {
					if _, has := c["packets"]; has {
						c["packets"], c["bytes"] = 0, 0
					}
				}
			}
			relZeroCounters(e)
		}
	case []any:
		for _, e := range x {
			relZeroCounters(e)
		}
	}
}

// relLayoutDiff names the lines only in a and only in b, in order ("" when
// equal, duplicates counted).
func relLayoutDiff(a, b []string) string {
	count := map[string]int{}
	for _, l := range a {
		count[l]++
	}
	for _, l := range b {
		count[l]--
	}
	var out []string
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch c := count[k]; {
		case c > 0:
			out = append(out, fmt.Sprintf("%d more of %s", c, k))
		case c < 0:
			out = append(out, fmt.Sprintf("%d fewer of %s", -c, k))
		}
	}
	if len(out) == 0 && !slices.Equal(a, b) {
		return "same lines in another order"
	}
	return strings.Join(out, "\n")
}

// relCheckTable checks that n's namespace holds exactly one table inet
// segmesh and that its layout is ref's (a node that never crashed).
func relCheckTable(t *testing.T, n, ref *harness.Node, when string) {
	t.Helper()
	if c, err := relTableCount(n.Namespace, "inet", "segmesh"); err != nil {
		t.Errorf("%s: %s: %v", when, n.Name, err)
	} else if c != 1 {
		t.Errorf("%s: %s has %d tables inet segmesh, want 1", when, n.Name, c)
	}
	got, gotRules, err := relTableLayout(n)
	if err != nil {
		t.Errorf("%s: %s: %v", when, n.Name, err)
		return
	}
	want, wantRules, err := relTableLayout(ref)
	if err != nil {
		t.Errorf("%s: %s: %v", when, ref.Name, err)
		return
	}
	if d := relLayoutDiff(got, want); d != "" {
		t.Errorf("%s: table inet segmesh of %s (%d rules) differs from %s's (%d rules):\n%s", when, n.Name, gotRules, ref.Name, wantRules, d)
	} else {
		t.Logf("%s: %s's table inet segmesh: %d objects, %d rules, same layout as %s's", when, n.Name, len(got), gotRules, ref.Name)
	}
}

// relSets reads n's sets (the model routes single ports to allowN and
// ranges to the interval sets allowNr, as the daemon does).
func relSets(n *harness.Node) (nftSets, error) {
	return segmeshSets(n.Namespace)
}

// relWant is the model's sets for n with members (n among them, or not)
// the mesh membership.
func relWant(f *aclFixture, n *harness.Node, members []*harness.Node) nftSets {
	m, ms := f.snapshot()
	var peers []member
	for _, o := range members {
		peers = append(peers, ms[o])
	}
	return m.expectedSets(ms[n], peers)
}

// relSetsMatch is a waitNodes condition: n's sets (see relSets) are the
// model's for the fixture's current policy and tags with every fixture
// node a member.
func relSetsMatch(f *aclFixture) func(*harness.Node) error {
	return relSetsAmong(f, nil)
}

// relSetsAmong is relSetsMatch with only members in the membership (nil:
// every fixture node).
func relSetsAmong(f *aclFixture, members []*harness.Node) func(*harness.Node) error {
	return func(n *harness.Node) error {
		ms := members
		if ms == nil {
			f.mu.Lock()
			ms = append([]*harness.Node(nil), f.nodes...)
			f.mu.Unlock()
		}
		got, err := relSets(n)
		if err != nil {
			return err
		}
		if d := relWant(f, n, ms).diff(got); d != "" {
			return fmt.Errorf("sets differ from the model: %s", d)
		}
		return nil
	}
}

// relSetsSubset checks that every element in n's sets is one the model
// implies with every node of the fixture a member (none stale, none from
// another policy version), and that the local sets hold n's addresses.
func relSetsSubset(f *aclFixture, n *harness.Node) error {
	f.mu.Lock()
	members := append([]*harness.Node(nil), f.nodes...)
	f.mu.Unlock()
	want := relWant(f, n, members)
	got, err := relSets(n)
	if err != nil {
		return err
	}
	var problems []string
	for set, elems := range got {
		for _, e := range elems {
			if !slices.Contains(want[set], e) {
				problems = append(problems, fmt.Sprintf("%s holds %s", set, e))
			}
		}
	}
	for _, set := range []string{"local4", "local6"} {
		if !sameStrings(got[set], want[set]) {
			problems = append(problems, fmt.Sprintf("%s is %v, want %v", set, got[set], want[set]))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("sets beyond the model: %s", strings.Join(problems, "; "))
	}
	return nil
}

// relCachedPeer is one entry of state_dir/peers.json.
type relCachedPeer struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// relPeerCache reads n's persisted peer cache (state_dir/peers.json).
func relPeerCache(n *harness.Node) ([]relCachedPeer, error) {
	b, err := os.ReadFile(filepath.Join(n.Dir, "state", "peers.json"))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Peers []relCachedPeer `json:"peers"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: peers.json: %w: %s", n.Name, err, b)
	}
	return doc.Peers, nil
}

// relCacheLists reports whether n's peer cache names key or lists addr.
func relCacheLists(n *harness.Node, key, addr string) (bool, error) {
	peers, err := relPeerCache(n)
	if err != nil {
		return false, err
	}
	for _, p := range peers {
		if p.Name == key || p.Addr == addr {
			return true, nil
		}
	}
	return false, nil
}

// relWaitMesh waits like TestCluster.WaitMesh, logging what is still
// missing every 10 s, and returns how long it took.
func relWaitMesh(t *testing.T, tc *harness.TestCluster, timeout time.Duration, nodes ...*harness.Node) time.Duration {
	t.Helper()
	start := time.Now()
	lastLog := start
	tc.WaitFor("full mesh", timeout, func() error {
		err := harness.MeshProblem(nodes...)
		if err != nil && time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			t.Logf("after %v: %v", relMS(time.Since(start)), err)
		}
		return err
	})
	return time.Since(start)
}

// relTiming logs a TIMING line.
func relTiming(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("TIMING "+format, args...)
}

// relMS rounds a duration for TIMING lines.
func relMS(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
