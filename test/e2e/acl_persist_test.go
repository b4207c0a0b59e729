package e2e

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// persistPolicy lets web reach db on tcp/PORT (and ping everywhere); the
// versions of TestACLPersistedPolicy differ only in PORT.
func persistPolicy(port int) string {
	return fmt.Sprintf(`mode: enforce
segments:
  web: {role: web}
  db: {role: db}
rules:
  - {name: web-to-db, from: [web], to: [db], ports: [tcp/%d]}
  - {name: ping, from: ["*"], to: ["*"], ports: [icmp]}
`, port)
}

// persistPorts are the ports of v1 (policy_file), v2 and v3.
var persistPorts = []int{5432, 5433, 5434}

// TestACLPersistedPolicy: policies survive restarts and never go back.
//
//   - A reload on a node whose policy_file still holds v1 (unchanged since
//     it read it) does not roll the mesh back from v2.
//   - c, restarted while every other node is down, enforces the persisted
//     v3 before it rejoins anyone; b, which was down during v3 and restarts
//     with v2 persisted (and an unchanged v1 policy_file), rejoins through c:
//     c enforces v3 against b from its first packet and takes nothing older.
func TestACLPersistedPolicy(t *testing.T) {
	v1 := persistPolicy(persistPorts[0])
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: v1})
	a := tc.AddNode(harness.NodeSpec{Name: "a", Tags: role("db")})
	b := tc.AddNode(harness.NodeSpec{Name: "b", Tags: role("web"), Join: []string{a.GossipAddr()}})
	c := tc.AddNode(harness.NodeSpec{Name: "c", Tags: role("db"), Join: []string{a.GossipAddr()}})
	all := []*harness.Node{a, b, c}
	tc.Start(all...)
	tc.WaitMesh(meshTimeout, all...)
	self := selves(t, tc, all...)
	c4 := netip.MustParseAddr(self[c].Self.Address)
	c6 := netip.MustParseAddr(self[c].Self.Address6)
	tc.WaitFor("one policy everywhere", 10*time.Second, func() error {
		p, err := policyOf(a)
		if err != nil {
			return err
		}
		if p.Version != 1 {
			return fmt.Errorf("a: policy %+v, want v1", p)
		}
		return holdsFor(all, 0, hasPolicy(p.Version, p.Hash))
	})
	tc.Ping(b, c4.String(), pingTimeout)

	startServer(t, tc, c.Namespace, "serve-c", persistPorts, nil)
	// only checks the ports of c seen from b: port i is allowed by v(i+1).
	only := func(t *testing.T, allowed int, when string) {
		t.Helper()
		var flows []flow
		want := map[flow]bool{}
		for _, p := range persistPorts {
			for _, addr := range []netip.Addr{c4, c6} {
				fl := flow{"tcp", addr, p}
				flows, want[fl] = append(flows, fl), p == allowed
			}
		}
		t.Logf("%s: b -> c allowed only on tcp/%d", when, allowed)
		checkFlows(t, b, flows, want)
	}
	only(t, persistPorts[0], "v1")

	v2 := applyPolicy(t, a, persistPolicy(persistPorts[1]))
	if _, err := waitNodes(all, time.Now(), 10*time.Second, hasPolicy(v2.version, v2.hash)); err != nil {
		t.Fatalf("v2 everywhere: %v", err)
	}

	t.Run("stale policy_file on reload", func(t *testing.T) {
		reloadNode(t, c) // c's policy_file still holds v1, unchanged since c read it
		if err := holdsFor(all, 2*time.Second, hasPolicy(v2.version, v2.hash)); err != nil {
			t.Errorf("after a reload with a stale policy_file: %v", err)
		}
		only(t, persistPorts[1], "v2 after the reload")
	})

	t.Run("restart with the seeds down", func(t *testing.T) {
		tc := tc.With(t)
		tc.Stop(b) // b keeps v2
		v3 := applyPolicy(t, a, persistPolicy(persistPorts[2]))
		if _, err := waitNodes([]*harness.Node{a, c}, time.Now(), 10*time.Second, hasPolicy(v3.version, v3.hash)); err != nil {
			t.Fatalf("v3 on a and c: %v", err)
		}
		tc.Stop(a)
		tc.Stop(c)

		// c alone: the persisted v3 is in force before any peer shows up.
		start := time.Now()
		tc.Start(c)
		var first *harness.Status
		tc.WaitFor("c answers", 20*time.Second, func() error {
			st, err := c.Status()
			if err != nil {
				return err
			}
			first = st
			return nil
		})
		t.Logf("TIMING restart alone: c answers status %v after start", time.Since(start).Round(time.Millisecond))
		if first.Policy.Version != v3.version || first.Policy.Hash != v3.hash {
			t.Errorf("c's first status after the restart: policy %+v, want v%d %s", first.Policy, v3.version, v3.hash)
		}
		for _, p := range first.Peers {
			if p.State == harness.StateUp {
				t.Errorf("c has peer %s up while every other node is down", p.Name)
			}
		}
		if err := finalIs("drop")(c); err != nil {
			t.Errorf("c alone: %v", err)
		}
		sets, err := segmeshSets(c.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		if !sameStrings(sets["local4"], []string{c4.String()}) || !sameStrings(sets["local6"], []string{c6.String()}) {
			t.Errorf("c alone: local sets %v %v, want %s %s", sets["local4"], sets["local6"], c4, c6)
		}

		// b comes back with v2 and a stale v1 policy_file; its seed a is
		// down, its peer cache leads it to c.
		tc.Start(b)
		tc.WaitMesh(meshTimeout*2, b, c)
		if p, err := policyOf(c); err != nil || p.Version != v3.version || p.Hash != v3.hash {
			t.Errorf("c after b rejoined: policy %+v (%v), want v%d %s", p, err, v3.version, v3.hash)
		}
		tc.Ping(b, c4.String(), pingTimeout)
		only(t, persistPorts[2], "v3 from c's persisted state, b still restarting with v2")
		if _, err := waitNodes([]*harness.Node{b, c}, time.Now(), 10*time.Second, hasPolicy(v3.version, v3.hash)); err != nil {
			t.Errorf("b takes v3 from c: %v", err)
		}
	})
}
