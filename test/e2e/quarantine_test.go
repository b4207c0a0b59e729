package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/test/harness"
)

// quarantinePolicy: ping everywhere, web -> app tcp/8080, app -> db
// tcp/5432, ops -> everyone tcp/22 (the forensic path).
const quarantinePolicy = `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
  ops: {role: ops}
rules:
  - name: ping
    from: ["*"]
    to: ["*"]
    ports: [icmp]
  - name: web-to-app
    from: [web]
    to: [app]
    ports: [tcp/8080]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: [tcp/5432]
  - name: ops-ssh
    from: [ops]
    to: ["*"]
    ports: [tcp/22]
`

type quarantineMesh struct {
	tc                     *harness.TestCluster
	ops, web1, web2, x, db *harness.Node
	nodes                  []*harness.Node
	addr                   map[*harness.Node]netip.Addr
}

func newQuarantineMesh(t *testing.T) *quarantineMesh {
	t.Helper()
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: 30 * time.Second, Policy: quarantinePolicy})
	m := &quarantineMesh{tc: tc, addr: map[*harness.Node]netip.Addr{}}
	m.ops = tc.AddNode(harness.NodeSpec{Name: "ops1", Tags: role("ops")})
	join := []string{m.ops.GossipAddr()}
	m.web1 = tc.AddNode(harness.NodeSpec{Name: "web1", Tags: role("web"), Join: join})
	m.web2 = tc.AddNode(harness.NodeSpec{Name: "web2", Tags: role("web"), Join: join})
	m.x = tc.AddNode(harness.NodeSpec{Name: "app1", Tags: role("app"), Join: join, Set: map[string]any{"metrics_listen": metricsListen}})
	m.db = tc.AddNode(harness.NodeSpec{Name: "db1", Tags: role("db"), Join: join, Set: map[string]any{"metrics_listen": metricsListen}})
	m.nodes = []*harness.Node{m.ops, m.web1, m.web2, m.x, m.db}
	tc.Start(m.nodes...)
	tc.WaitMesh(meshTimeout, m.nodes...)
	if _, err := waitNodes(m.nodes, time.Now(), 20*time.Second, func(n *harness.Node) error {
		if p := tc.Status(n).Policy; p.Version < 1 {
			return fmt.Errorf("no policy yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range m.nodes {
		m.addr[n] = netip.MustParseAddr(tc.Status(n).Self.Address)
	}
	startServer(t, tc, m.x.Namespace, "serve-app1", []int{8080, 22}, nil)
	startServer(t, tc, m.db.Namespace, "serve-db1", []int{5432}, nil)
	return m
}

// quarantineState is what a node's status says about x: its entry in the
// quarantined list (and its peer state, for the others).
func quarantineState(n *harness.Node, xKey string) (listed bool, state string, err error) {
	st, err := n.Status()
	if err != nil {
		return false, "", err
	}
	for _, q := range st.Quarantined {
		if q.PublicKey == xKey {
			listed = true
		}
	}
	for _, p := range st.Peers {
		if p.PublicKey == xKey {
			state = p.State
		}
	}
	return listed, state, nil
}

func quarantinedOn(xKey string, want bool) func(*harness.Node) error {
	return func(n *harness.Node) error {
		listed, _, err := quarantineState(n, xKey)
		if err != nil {
			return err
		}
		if listed != want {
			return fmt.Errorf("quarantined list has the node: %v, want %v", listed, want)
		}
		return nil
	}
}

// pingStream runs ping -D every 200 ms from src to dst.
func pingStream(tc *harness.TestCluster, src *harness.Node, name string, dst netip.Addr) *harness.Proc {
	return tc.Spawn(src.Namespace, name, "ping", "-D", "-n", "-i", "0.2", dst.String())
}

// pingTimes are the times of the replies in ping -D output.
func pingTimes(out string) []time.Time {
	var ts []time.Time
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "[") || !strings.Contains(l, "bytes from") {
			continue
		}
		end := strings.IndexByte(l, ']')
		if end < 0 {
			continue
		}
		if f, err := strconv.ParseFloat(l[1:end], 64); err == nil {
			ts = append(ts, time.Unix(0, int64(f*1e9)))
		}
	}
	return ts
}

// waitPings waits until the ping stream got a reply after since (alive) or,
// with !alive, none for quiet after since.
func waitPings(tc *harness.TestCluster, p *harness.Proc, what string, since time.Time, alive bool, timeout time.Duration) {
	const quiet = 1500 * time.Millisecond
	tc.WaitFor(what, timeout, func() error {
		ts := pingTimes(p.Output())
		var last time.Time
		if len(ts) > 0 {
			last = ts[len(ts)-1]
		}
		switch {
		case alive && last.After(since):
			return nil
		case alive:
			return fmt.Errorf("no reply since %v", since.Format(time.StampMilli))
		case time.Since(last) >= quiet && time.Since(since) >= quiet:
			return nil
		}
		return fmt.Errorf("last reply %v ago", time.Since(last).Round(time.Millisecond))
	})
}

func (m *quarantineMesh) cli(t *testing.T, on *harness.Node, args ...string) cliResult {
	t.Helper()
	return segmeshCLI(t, append(args, "--socket", on.Socket)...)
}

// TestQuarantine: five nodes; app1 (X) has an established TCP flow and a
// ping stream in (from web1) and out (to db1). `quarantine app1
// --allow-from ops`, given on web2, stops all four on every node within
// 2 s; ops1 still reaches app1's ssh port, nobody else reaches app1 and
// app1 reaches nobody. Every node restarted (app1 too), the quarantine
// holds from the first packet. A release given on db1 while db1 is cut
// off wins everywhere once it is back (the newer entry), and the policy's
// access returns.
func TestQuarantine(t *testing.T) {
	m := newQuarantineMesh(t)
	tc := m.tc
	xKey := tc.PublicKey(m.x)
	sIn := relStream(t, tc, m.web1, "stream-web1-app1", netip.AddrPortFrom(m.addr[m.x], 8080).String())
	sOut := relStream(t, tc, m.x, "stream-app1-db1", netip.AddrPortFrom(m.addr[m.db], 5432).String())
	pIn := pingStream(tc, m.web1, "ping-web1-app1", m.addr[m.x])
	pOut := pingStream(tc, m.x, "ping-app1-db1", m.addr[m.db])
	start := time.Now()
	waitPings(tc, pIn, "web1 -> app1 pings answered", start, true, 10*time.Second)
	waitPings(tc, pOut, "app1 -> db1 pings answered", start, true, 10*time.Second)

	// Ambiguity is an error naming the nodes.
	if r := m.cli(t, m.web2, "quarantine", "nobody-here"); r.code == 0 || !strings.Contains(r.stderr, "nobody-here") {
		t.Errorf("quarantine of an unknown node: %v", r)
	}
	q := time.Now()
	r := m.cli(t, m.web2, "quarantine", "app1", "--allow-from", "ops", "--reason", "INC-1 beaconing")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	at, err := waitNodes(m.nodes, q, 2*time.Second, quarantinedOn(xKey, true))
	if err != nil {
		t.Fatalf("quarantine not on every node within 2 s: %v", err)
	}
	cutIn := relStalled(tc, sIn, "web1's stream into app1 stops", time.Second, 5*time.Second)
	cutOut := relStalled(tc, sOut, "app1's stream to db1 stops", time.Second, 5*time.Second)
	waitPings(tc, pIn, "web1's pings to app1 stop", q, false, 5*time.Second)
	waitPings(tc, pOut, "app1's pings to db1 stop", q, false, 5*time.Second)
	t.Logf("quarantine given on web2: listed on every node within %v (%s); streams' last echoes %v and %v after the command",
		slices.Max(mapValues(at)).Round(time.Millisecond), nodeTimes(at), cutIn.Sub(q).Round(time.Millisecond), cutOut.Sub(q).Round(time.Millisecond))
	m.checkCut(t, "quarantined")
	if r := m.cli(t, m.x, "release", "app1"); r.code == 0 || !strings.Contains(r.stderr, "this node is the one quarantined") {
		t.Errorf("app1 releasing itself: want refused: %v", r)
	}

	st := tc.Status(m.x)
	if len(st.Quarantined) != 1 || !st.Quarantined[0].Self || st.Quarantined[0].Reason != "INC-1 beaconing" || !slices.Equal(st.Quarantined[0].AllowFrom, []string{"ops"}) {
		t.Errorf("app1's own status: quarantined %+v, want itself with the reason and allow_from [ops]", st.Quarantined)
	}
	if _, state, _ := quarantineState(m.db, xKey); state != api.StateQuarantined {
		t.Errorf("db1 lists app1 as %q, want quarantined", state)
	}
	if text, err := httpGet(m.db.Namespace, "http://"+metricsListen+"/metrics"); err != nil ||
		!strings.Contains(text, "segmesh_quarantined_nodes 1") || strings.Contains(text, "segmesh_packets_quarantined_total 0\n") {
		t.Errorf("db1 metrics: %v; want segmesh_quarantined_nodes 1 and dropped packets counted", err)
	}

	// Every node restarts, app1 too; nothing from web1 reaches app1 meanwhile.
	var leaked atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if res, _ := probeOne(m.web1.Namespace, 300*time.Millisecond, flow{"tcp", m.addr[m.x], 8080}); res == resOK {
				leaked.Add(1)
			}
		}
	}()
	for _, n := range m.nodes {
		tc.Restart(n)
	}
	tc.WaitMesh(meshTimeout, m.nodes...)
	if _, err := waitNodes(m.nodes, time.Now(), 10*time.Second, quarantinedOn(xKey, true)); err != nil {
		t.Errorf("after restarting every node: %v", err)
	}
	close(stop)
	wg.Wait()
	if n := leaked.Load(); n > 0 {
		t.Errorf("%d connections from web1 reached app1 across the restarts", n)
	}
	m.checkCut(t, "quarantined after restarting every node")

	// A node joining now learns it before it reaches app1.
	web3 := tc.AddNode(harness.NodeSpec{Name: "web3", Tags: role("web"), Join: []string{m.ops.GossipAddr()}})
	tc.Start(web3)
	tc.WaitMesh(meshTimeout, append(slices.Clone(m.nodes), web3)...)
	if err := quarantinedOn(xKey, true)(web3); err != nil {
		t.Errorf("web3, joined during the quarantine: %v", err)
	}
	expectProbe(t, web3, flow{"tcp", m.addr[m.x], 8080}, resTimeout)

	// Partition: db1 cut off; released there; the others keep it until
	// db1 is back, then the newer entry (the release) wins everywhere.
	if err := m.db.LinkDown(); err != nil {
		t.Fatal(err)
	}
	if r := m.cli(t, m.db, "release", "app1"); r.code != 0 {
		t.Fatalf("release on db1 while cut off: %v", r)
	}
	if err := quarantinedOn(xKey, false)(m.db); err != nil {
		t.Errorf("db1 after its release: %v", err)
	}
	expectProbe(t, m.web1, flow{"tcp", m.addr[m.x], 8080}, resTimeout) // web1 has not heard of it
	healed := time.Now()
	if err := m.db.LinkUp(); err != nil {
		t.Fatal(err)
	}
	if _, err := waitNodes(m.nodes, healed, 60*time.Second, quarantinedOn(xKey, false)); err != nil {
		t.Fatalf("the release given during the partition did not win everywhere: %v", err)
	}
	t.Logf("release given on db1 during its partition: everywhere %v after the heal", time.Since(healed).Round(time.Millisecond))
	tc.WaitMesh(meshTimeout, m.nodes...)
	expectProbe(t, m.web1, flow{"tcp", m.addr[m.x], 8080}, resOK)
	expectProbe(t, m.x, flow{"tcp", m.addr[m.db], 5432}, resOK)
	expectProbe(t, m.web1, flow{"icmp", m.addr[m.x], 0}, resOK)
	expectProbe(t, m.web1, flow{"tcp", m.addr[m.x], 22}, refusedAtSender(flow{proto: "tcp"})) // the policy again
}

// checkCut: nobody but ops reaches app1, app1 reaches nobody, ops1 reaches
// app1's ssh port (its forensic path).
func (m *quarantineMesh) checkCut(t *testing.T, when string) {
	t.Helper()
	for _, n := range []*harness.Node{m.web1, m.web2, m.db} {
		for _, f := range []flow{{"tcp", m.addr[m.x], 8080}, {"icmp", m.addr[m.x], 0}} {
			if got, err := probeOne(n.Namespace, denyTimeout, f); err != nil || got != resTimeout {
				t.Errorf("%s: %s -> %s: %q %v, want timeout", when, n.Name, f, got, err)
			}
		}
	}
	for _, f := range []flow{{"tcp", m.addr[m.db], 5432}, {"icmp", m.addr[m.ops], 0}, {"icmp", m.addr[m.web1], 0}} {
		if got, err := probeOne(m.x.Namespace, denyTimeout, f); err != nil || got != resTimeout {
			t.Errorf("%s: app1 -> %s: %q %v, want timeout", when, f, got, err)
		}
	}
	// The forensic path may wait for a WireGuard handshake after restarts.
	m.tc.WaitFor(when+": ops1 reaches app1's ssh port", 10*time.Second, func() error {
		if got, err := probeOne(m.ops.Namespace, 2*time.Second, flow{"tcp", m.addr[m.x], 22}); err != nil || got != resOK {
			return fmt.Errorf("ops1 -> app1 tcp/22: %q %v", got, err)
		}
		return nil
	})
}

// nodeTimes is "name 12ms, ..." in node order.
func nodeTimes(at map[*harness.Node]time.Duration) string {
	var parts []string
	for n, d := range at {
		parts = append(parts, fmt.Sprintf("%s %v", n.Name, d.Round(time.Millisecond)))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
