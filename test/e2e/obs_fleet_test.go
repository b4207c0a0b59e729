package e2e

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/test/harness"
)

// fleetSegments are the fleet test's segments, in port order.
var fleetSegments = []string{"web", "app", "db", "ops"}

// fleetPolicy defines the segments and no rule: in audit mode every flow
// is audited, the raw material of policy suggest --fleet.
const fleetPolicy = `mode: audit
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
  ops: {role: ops}
rules: []
`

// fleetPort is the port of the mix from segment index s to segment index d:
// each segment pair has its own, so a rule for one pair admits no other
// pair's traffic.
func fleetPort(s, d int) int { return 7000 + 10*s + d }

// fleetMesh is the five-node fleet of TestObsFleet.
type fleetMesh struct {
	tc    *harness.TestCluster
	nodes []*harness.Node
	seg   map[*harness.Node]int // index into fleetSegments
	addr  map[*harness.Node]netip.Addr
}

func (m *fleetMesh) byName(name string) *harness.Node {
	for _, n := range m.nodes {
		if n.Name == name {
			return n
		}
	}
	panic("no node " + name)
}

// mix is every node's traffic to every other node: on its segment pair's
// port (tcp; app -> db also udp), and with wrong, for each flow one on a
// port of another pair (which the suggested rules must not admit).
func (m *fleetMesh) mix(wrong bool) map[*harness.Node][]flow {
	out := map[*harness.Node][]flow{}
	for _, src := range m.nodes {
		for _, dst := range m.nodes {
			if src == dst {
				continue
			}
			s, d := m.seg[src], m.seg[dst]
			if wrong {
				d = (d + 1) % len(fleetSegments)
			}
			out[src] = append(out[src], flow{"tcp", m.addr[dst], fleetPort(s, d)})
			if !wrong && fleetSegments[s] == "app" && fleetSegments[d] == "db" {
				out[src] = append(out[src], flow{"udp", m.addr[dst], fleetPort(s, d)})
			}
		}
	}
	return out
}

func newFleetMesh(t *testing.T) *fleetMesh {
	t.Helper()
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: fleetPolicy})
	m := &fleetMesh{tc: tc, seg: map[*harness.Node]int{}, addr: map[*harness.Node]netip.Addr{}}
	for _, spec := range []struct{ name, role string }{{"ops1", "ops"}, {"web1", "web"}, {"web2", "web"}, {"app1", "app"}, {"db1", "db"}} {
		ns := harness.NodeSpec{Name: spec.name, Tags: role(spec.role), Set: map[string]any{"metrics_listen": metricsListen}}
		if len(m.nodes) > 0 {
			ns.Join = []string{m.nodes[0].GossipAddr()}
		}
		n := tc.AddNode(ns)
		m.nodes = append(m.nodes, n)
		m.seg[n] = slices.Index(fleetSegments, spec.role)
	}
	tc.Start(m.nodes...)
	tc.WaitMesh(meshTimeout, m.nodes...)
	if _, err := waitNodes(m.nodes, time.Now(), 20*time.Second, func(n *harness.Node) error {
		if p := tc.Status(n).Policy; p.Version < 1 || p.Mode != "audit" {
			return fmt.Errorf("policy %+v", p)
		}
		return nil
	}); err != nil {
		t.Fatalf("audit policy not active everywhere: %v", err)
	}
	var ports []int
	for s := range fleetSegments {
		for d := range fleetSegments {
			ports = append(ports, fleetPort(s, d))
		}
	}
	for _, n := range m.nodes {
		m.addr[n] = netip.MustParseAddr(tc.Status(n).Self.Address)
		startServer(t, tc, n.Namespace, "serve-"+n.Name, ports, ports)
	}
	for _, src := range m.nodes {
		for _, dst := range m.nodes {
			if src != dst {
				tc.Ping(src, m.addr[dst].String(), pingTimeout)
			}
		}
	}
	return m
}

// probeMix probes every node's flows at once and returns the results that
// are not want.
func (m *fleetMesh) probeMix(t *testing.T, flows map[*harness.Node][]flow, want func(flow) string) []string {
	t.Helper()
	type res struct {
		src *harness.Node
		got map[flow]string
		err error
	}
	ch := make(chan res, len(flows))
	for src, fl := range flows {
		go func() {
			got, err := probeFlows(src.Namespace, denyTimeout, fl)
			ch <- res{src, got, err}
		}()
	}
	var bad []string
	for range flows {
		r := <-ch
		if r.err != nil {
			t.Fatalf("probe from %s: %v", r.src.Name, r.err)
		}
		for f, got := range r.got {
			if w := want(f); got != w {
				bad = append(bad, fmt.Sprintf("%s -> %s: %s, want %s", r.src.Name, f, got, w))
			}
		}
	}
	slices.Sort(bad)
	return bad
}

// fleetFlows runs `segmesh flows --fleet --json` on n.
func fleetFlows(t *testing.T, n *harness.Node, extra ...string) (flowsJSON, cliResult) {
	t.Helper()
	r := segmeshCLI(t, append([]string{"flows", "--fleet", "--json", "--socket", n.Socket}, extra...)...)
	var out flowsJSON
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("flows --fleet --json: %v: %s", err, r.stdout)
	}
	return out, r
}

type flowsJSON struct {
	Flows   []api.Flow    `json:"flows"`
	Missing []api.Missing `json:"missing"`
}

func missingNames(ms []api.Missing) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Node)
	}
	return out
}

// TestObsFleet: five nodes in audit mode, a traffic mix from every node to
// every other. One `policy suggest --fleet` on ops1 proposes segment-level
// rules that, applied in enforce mode, admit the whole mix and none of the
// probes on other pairs' ports. The peer API answers only where the policy
// admits tcp/9477 (ops), times out at the ACL for a peer without a rule,
// and gives nothing to the underlay or a local process outside the mesh.
// The map renders every segment in each format. With a node stopped, the
// fleet commands name it in missing and exit 0 with a warning.
func TestObsFleet(t *testing.T) {
	m := newFleetMesh(t)
	ops, web1, db1, app1 := m.byName("ops1"), m.byName("web1"), m.byName("db1"), m.byName("app1")
	mix := m.mix(false)
	if bad := m.probeMix(t, mix, func(flow) string { return resOK }); len(bad) > 0 {
		t.Fatalf("audit mode refused part of the mix:\n%s", strings.Join(bad, "\n"))
	}
	total := 0
	for _, fl := range mix {
		total += len(fl)
	}
	// Every flow of the mix is audited at its receiver, and ops1 sees them
	// all through the peer APIs (audit mode lets its requests pass).
	m.tc.WaitFor("every mix flow audited at its receiver, in ops1's flows --fleet", 15*time.Second, func() error {
		out, r := fleetFlows(t, ops)
		if len(out.Missing) != 0 {
			return fmt.Errorf("missing %+v (stderr %s)", out.Missing, r.stderr)
		}
		for src, fl := range mix {
			for _, f := range fl {
				ok := slices.ContainsFunc(out.Flows, func(x api.Flow) bool {
					return x.Direction == api.DirectionIn && x.Verdict == api.VerdictAudited && x.Peer == src.Name &&
						x.Proto == f.proto && int(x.Port) == f.port && x.DstAddr == f.addr.String()
				})
				if !ok {
					return fmt.Errorf("%s -> %s not in the fleet's flows", src.Name, f)
				}
			}
		}
		return nil
	})

	sug := segmeshCLI(t, "policy", "suggest", "--fleet", "--socket", ops.Socket)
	if sug.code != 0 || strings.Contains(sug.stderr, "warning:") {
		t.Fatalf("policy suggest --fleet: %v", sug)
	}
	t.Logf("policy suggest --fleet on ops1 (%d mix flows):\n%s\nstderr: %s", total, sug.stdout, sug.stderr)
	if n := strings.Count(sug.stdout, "- name:"); n > len(fleetSegments)*len(fleetSegments) {
		t.Errorf("%d rules suggested: more than one per segment pair", n)
	}
	full := segmeshCLI(t, "policy", "suggest", "--fleet", "--policy", "--socket", ops.Socket)
	if full.code != 0 {
		t.Fatalf("%v", full)
	}
	enforce := strings.Replace(full.stdout, "mode: audit", "mode: enforce", 1) +
		"  - name: ops-reads-the-fleet\n    from: [ops]\n    to: [\"*\"]\n    ports: [tcp/9477]\n"
	a := applyPolicy(t, ops, enforce)
	if _, err := waitNodes(m.nodes, time.Now(), 10*time.Second, hasPolicy(a.version, a.hash)); err != nil {
		t.Fatalf("suggested policy v%d not active everywhere: %v", a.version, err)
	}
	if bad := m.probeMix(t, mix, func(flow) string { return resOK }); len(bad) > 0 {
		t.Errorf("the suggested rules do not admit all of the mix:\n%s", strings.Join(bad, "\n"))
	}
	if bad := m.probeMix(t, m.mix(true), refusedAtSender); len(bad) > 0 {
		t.Errorf("the suggested rules admit flows outside the mix:\n%s", strings.Join(bad, "\n"))
	}
	t.Logf("suggested policy v%d (enforce): the %d mix flows pass, the 20 on other pairs' ports are refused", a.version, total)

	t.Run("peer API", func(t *testing.T) { checkPeerAPI(t, m, ops, web1, db1) })
	t.Run("map", func(t *testing.T) { checkFleetMap(t, ops) })

	// A stopped node is named, the rest still answers, exit 0.
	m.tc.Stop(app1)
	sug = segmeshCLI(t, "policy", "suggest", "--fleet", "--socket", ops.Socket)
	if sug.code != 0 || !strings.Contains(sug.stderr, "warning: 1 node(s) did not answer") || !strings.Contains(sug.stderr, "app1 (") {
		t.Errorf("policy suggest --fleet with app1 stopped: want exit 0 and a warning naming app1: %v", sug)
	}
	out, r := fleetFlows(t, ops)
	if !slices.Equal(missingNames(out.Missing), []string{"app1"}) || !strings.Contains(r.stderr, "app1") {
		t.Errorf("flows --fleet with app1 stopped: missing %+v, stderr %q", out.Missing, r.stderr)
	}
	t.Logf("app1 stopped: missing %+v", out.Missing)
}

// checkPeerAPI: ops (tcp/9477 admitted) reads every node; web1 has no
// rule: its own egress refuses it, and with that bypassed the receivers'
// ACL drops it (a timeout); the underlay and a process on db1 itself
// outside the mesh get nothing.
func checkPeerAPI(t *testing.T, m *fleetMesh, ops, web1, db1 *harness.Node) {
	out, _ := fleetFlows(t, ops)
	if len(out.Missing) != 0 {
		t.Errorf("ops1 flows --fleet: missing %+v", out.Missing)
	}
	nodes := map[string]bool{}
	for _, f := range out.Flows {
		nodes[f.Node] = true
	}
	if len(nodes) != len(m.nodes) {
		t.Errorf("ops1 flows --fleet has flows of %v, want all %d nodes", nodes, len(m.nodes))
	}
	info, err := httpGet(ops.Namespace, fmt.Sprintf("http://%s:9477/v1/info", m.addr[db1]))
	if err != nil || !strings.Contains(info, `"name":"db1"`) || !strings.Contains(info, `"policy_hash"`) {
		t.Errorf("GET db1 /v1/info from ops1: %v %s", err, info)
	}
	out, r := fleetFlows(t, web1)
	if len(out.Missing) != len(m.nodes)-1 || !strings.Contains(r.stderr, "warning: 4 node(s) did not answer") {
		t.Errorf("web1 flows --fleet: want all 4 peers missing with a warning: %+v %s", out.Missing, r.stderr)
	}
	for _, ms := range out.Missing {
		if !strings.Contains(ms.Reason, "refused") {
			t.Errorf("web1: %s missing for %q, want its egress refusal", ms.Node, ms.Reason)
		}
	}
	bypassEgress(t, web1)
	expectProbe(t, web1, flow{"tcp", m.addr[db1], 9477}, resTimeout)
	expectProbe(t, web1, flow{"tcp", db1.Addr, 9477}, "refused")
	// A process on db1 outside the mesh: the connection arrives (locally
	// routed, it counts as the mesh interface's) and is reset unanswered,
	// its source being no admitted peer.
	expectProbe(t, db1, flow{"tcp", m.addr[db1], 9477}, "reset")
	metrics, err := httpGet(db1.Namespace, "http://"+metricsListen+"/metrics")
	if err != nil || !strings.Contains(metrics, `segmesh_peer_api_requests_total{code="200"}`) ||
		!strings.Contains(metrics, `segmesh_peer_api_requests_total{code="refused"}`) {
		t.Errorf("db1 metrics: %v; want segmesh_peer_api_requests_total with code 200 (ops1) and refused (the local process)", err)
	} else {
		promtoolCheck(t, metrics)
	}
	t.Logf("peer API: ops1 reads all %d nodes; web1 refused by its egress (%s), dropped at db1's ACL with egress bypassed; the underlay is refused, a local process reset unanswered",
		len(m.nodes), out.Missing[0].Reason)
}

// checkFleetMap: the SVG parses and names every segment, Graphviz takes the
// DOT, the Mermaid has its header and edges.
func checkFleetMap(t *testing.T, ops *harness.Node) {
	svg := segmeshCLI(t, "map", "--fleet", "--format", "svg", "--socket", ops.Socket)
	if svg.code != 0 {
		t.Fatalf("%v", svg)
	}
	text := map[string]bool{}
	dec := xml.NewDecoder(strings.NewReader(svg.stdout))
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("map --format svg is not well-formed XML: %v", err)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = x.Name.Local
			}
		case xml.CharData:
			for _, w := range strings.Fields(string(x)) {
				text[w] = true
			}
		}
	}
	if root != "svg" {
		t.Errorf("map svg root element %q", root)
	}
	for _, s := range fleetSegments {
		if !text[s] {
			t.Errorf("map svg does not name segment %s", s)
		}
	}
	dot := segmeshCLI(t, "map", "--fleet", "--format", "dot", "--socket", ops.Socket)
	if dot.code != 0 {
		t.Fatalf("%v", dot)
	}
	gv := exec.Command(requireTool(t, "dot"), "-Tsvg")
	gv.Stdin = strings.NewReader(dot.stdout)
	if b, err := gv.CombinedOutput(); err != nil {
		t.Errorf("dot -Tsvg refused the map: %v: %s\n%s", err, b, dot.stdout)
	}
	mm := segmeshCLI(t, "map", "--fleet", "--socket", ops.Socket)
	head, _, _ := strings.Cut(strings.TrimSpace(mm.stdout), "\n")
	if mm.code != 0 || !(strings.HasPrefix(head, "graph") || strings.HasPrefix(head, "flowchart")) || strings.Count(mm.stdout, "-->")+strings.Count(mm.stdout, "-.->") < 4 {
		t.Errorf("map (mermaid): want a graph/flowchart header and the edges: %v", mm)
	}
}
