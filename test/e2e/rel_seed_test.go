package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// TestRelSeedLoss: seed s, the only join address in every config, is
// killed for good (dead_peer_grace 5m, so only an operator removes it).
//
//   - The others keep working: pings and the allowed web -> app
//     connection pass, right after the kill and once s is declared dead.
//   - A new node whose config names a live member (not the seed) joins.
//   - `segmesh node remove` refuses a live node; on a dead seed it removes
//     it from every node's status and WireGuard within seconds (long before
//     the grace) and prunes it from every peer cache (state_dir/peers.json).
func TestRelSeedLoss(t *testing.T) {
	const longGrace = 5 * time.Minute
	f := newRelFixture(t, longGrace)
	tc := f.tc
	s := relAdd(f, "s", role("db"))
	a := relAdd(f, "a", role("web"), s)
	b := relAdd(f, "b", role("app"), s)
	c := relAdd(f, "c", role("web"), s)
	relStart(t, f)
	sPub, sAddr := f.self[s].Self.PublicKey, s.GossipAddr()
	startServer(t, tc, b.Namespace, "serve-b", []int{relStreamPort}, nil)
	live := []*harness.Node{a, b, c}
	// The cache is written a few seconds after a change (debounced).
	if _, err := waitNodes(live, time.Now(), 10*time.Second, func(n *harness.Node) error {
		cached, err := relCacheLists(n, sPub, sAddr)
		if err != nil {
			return err
		}
		if !cached {
			return fmt.Errorf("state/peers.json does not list the seed")
		}
		return nil
	}); err != nil {
		t.Fatalf("test premise: every peer cache lists the seed: %v", err)
	}

	// working checks that the survivors reach each other as the policy says.
	working := func(t *testing.T, when string, nodes ...*harness.Node) {
		t.Helper()
		for _, n := range nodes {
			for _, o := range nodes {
				if o != n {
					if _, err := harness.PingWithin(n, f.self[o].Self.Address, pingTimeout); err != nil {
						t.Errorf("%s: %s -> %s: %v", when, n.Name, o.Name, err)
					}
				}
			}
		}
		for _, src := range []*harness.Node{a, c} {
			want := map[flow]bool{}
			var flows []flow
			for _, v6 := range []bool{false, true} {
				fl := flow{"tcp", f.addr(b, v6), relStreamPort}
				flows, want[fl] = append(flows, fl), true
				fl = flow{"tcp", f.addr(b, v6), relStreamPort + 1}
				flows, want[fl] = append(flows, fl), false
			}
			checkFlows(t, src, flows, want)
		}
	}

	killed := time.Now()
	tc.Kill(s)
	working(t, "right after the seed died", live...)

	// A newcomer that knows only a live member.
	n := tc.AddNode(harness.NodeSpec{Name: "n", Tags: role("web"), Join: []string{b.GossipAddr()}})
	f.mu.Lock()
	f.byName["n"], f.tags[n] = n, role("web")
	f.mu.Unlock()
	joinStart := time.Now()
	tc.Start(n)
	tc.WaitMesh(meshTimeout, a, b, c, n)
	relTiming(t, "seed loss: a new node naming a live member (not the dead seed) joins, everyone up, %v after start", relMS(time.Since(joinStart)))
	f.self[n] = tc.Status(n)
	live = append(live, n)

	// The survivors declare the seed dead; within the grace it stays.
	deadAt, err := waitNodes([]*harness.Node{a, b, c}, killed, 40*time.Second, func(o *harness.Node) error {
		st, err := o.Status()
		if err != nil {
			return err
		}
		p, ok := st.Peer(sPub)
		if !ok {
			return harness.Abort(fmt.Errorf("the seed vanished without being declared dead (grace %v)", longGrace))
		}
		if p.State != harness.StateDead {
			return fmt.Errorf("sees s %q", p.State)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the seed is declared dead: %v", err)
	}
	var worst time.Duration
	for _, d := range deadAt {
		worst = max(worst, d)
	}
	relTiming(t, "seed loss: every survivor declares the killed seed dead %v after SIGKILL", relMS(worst))
	working(t, "with the seed dead", live...)

	// A live node is refused.
	if r := segmeshCLI(t, "node", "remove", "b", "--socket", a.Socket); r.code == 0 {
		t.Errorf("node remove of live b succeeded: %v", r)
	} else {
		t.Logf("node remove of a live node refused: %s", strings.TrimSpace(r.stderr))
	}
	if err := holdsFor(live, time.Second, relPeerIs(f.self[b].Self.PublicKey, harness.StateUp, b)); err != nil {
		t.Errorf("after a refused removal: %v", err)
	}

	removed := time.Now()
	if r := segmeshCLI(t, "node", "remove", "s", "--socket", a.Socket); r.code != 0 {
		t.Fatalf("node remove s: %v", r)
	} else if !strings.Contains(r.stdout, sPub) {
		t.Errorf("node remove s printed %q, want the seed's key %s", r.stdout, sPub)
	}
	at, err := waitNodes(live, removed, 10*time.Second, func(o *harness.Node) error {
		st, err := o.Status()
		if err != nil {
			return err
		}
		if p, ok := st.Peer(sPub); ok {
			return fmt.Errorf("status lists s as %q", p.State)
		}
		keys, err := relWGKeys(o)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k == sPub {
				return fmt.Errorf("wg show lists s")
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("after node remove: %v", err)
	}
	worst = 0
	for _, d := range at {
		worst = max(worst, d)
	}
	relTiming(t, "node remove of a dead seed (grace %v): gone from status and WireGuard on all %d nodes %v after the command started",
		longGrace, len(live), relMS(worst))
	cacheAt, err := waitNodes(live, removed, 15*time.Second, func(o *harness.Node) error {
		cached, err := relCacheLists(o, sPub, sAddr)
		if err != nil {
			return err
		}
		if cached {
			return fmt.Errorf("state/peers.json still lists s")
		}
		return nil
	})
	if err != nil {
		t.Errorf("peer caches after node remove: %v", err)
	}
	worst = 0
	for _, d := range cacheAt {
		worst = max(worst, d)
	}
	relTiming(t, "node remove of a dead seed: pruned from every peer cache (peers.json) %v after the command started", relMS(worst))

	// The survivors, newcomer included, form one mesh without the seed.
	if _, err := waitNodes(live, removed, 10*time.Second, relPeersExactly(f, live)); err != nil {
		t.Errorf("after node remove: %v", err)
	}
	working(t, "after the removal", live...)
}

// relPeerIs is a condition: the peer with key pub is in state (n itself is
// skipped).
func relPeerIs(pub, state string, of *harness.Node) func(*harness.Node) error {
	return func(n *harness.Node) error {
		if n == of {
			return nil
		}
		st, err := n.Status()
		if err != nil {
			return err
		}
		p, ok := st.Peer(pub)
		if !ok || p.State != state {
			return fmt.Errorf("%s: listed %v, state %q, want %q", of.Name, ok, p.State, state)
		}
		return nil
	}
}
