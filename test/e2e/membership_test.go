package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// TestLeaveAndDeath: a graceful leave (SIGTERM) is noticed within a few
// seconds and removes the peer from WireGuard at once; a kill -9 is noticed
// as "dead", the peer keeps its WireGuard entry during dead_peer_grace and
// is removed from status and `wg show` after it.
func TestLeaveAndDeath(t *testing.T) {
	tc := newCluster(t)
	a := tc.AddNode(harness.NodeSpec{Name: "a", Tags: role("web")})
	b := tc.AddNode(harness.NodeSpec{Name: "b", Tags: role("web"), Join: []string{a.GossipAddr()}})
	c := tc.AddNode(harness.NodeSpec{Name: "c", Tags: role("app"), Join: []string{a.GossipAddr()}})
	d := tc.AddNode(harness.NodeSpec{Name: "d", Tags: role("db"), Join: []string{a.GossipAddr()}})
	all := []*harness.Node{a, b, c, d}
	tc.Start(all...)
	tc.WaitMesh(meshTimeout, all...)
	self := selves(t, tc, all...)
	// Traffic first, so WireGuard peers have sessions to lose.
	for _, o := range []*harness.Node{c, d} {
		tc.Ping(a, self[o].Self.Address, pingTimeout)
		tc.Ping(b, self[o].Self.Address, pingTimeout)
	}
	observers := []*harness.Node{a, b}

	t.Run("graceful leave", func(t *testing.T) {
		tc := tc.With(t)
		pub := self[c].Self.PublicKey
		start := time.Now()
		tc.Stop(c)
		if code, _ := c.ExitCode(); code != 0 {
			t.Errorf("c exited with code %d after SIGTERM, want 0", code)
		}
		for _, o := range observers {
			waitPeer(tc, o, pub, "notices c left", 5*time.Second, func(p harness.StatusPeer, ok bool) error {
				if !ok || p.State == harness.StateLeft {
					return nil
				}
				return fmt.Errorf("c is %q", p.State)
			})
			t.Logf("TIMING graceful leave: %s noticed c's leave %v after SIGTERM", o.Name, time.Since(start).Round(time.Millisecond))
			waitNotInWireGuard(tc, o, pub, "c", 5*time.Second)
			t.Logf("TIMING graceful leave: %s dropped c from WireGuard %v after SIGTERM", o.Name, time.Since(start).Round(time.Millisecond))
		}
	})

	t.Run("kill -9", func(t *testing.T) {
		tc := tc.With(t)
		pub := self[d].Self.PublicKey
		start := time.Now()
		tc.Kill(d)
		deadAt := map[*harness.Node]time.Time{}
		for _, o := range observers {
			waitPeer(tc, o, pub, "declares d dead", 30*time.Second, func(p harness.StatusPeer, ok bool) error {
				switch {
				case !ok:
					return harness.Abort(fmt.Errorf("d vanished from status without being reported dead"))
				case p.State == harness.StateDead:
					return nil
				}
				return fmt.Errorf("d is %q", p.State)
			})
			deadAt[o] = time.Now()
			t.Logf("TIMING kill -9: %s declared d dead %v after SIGKILL", o.Name, deadAt[o].Sub(start).Round(time.Millisecond))
			// Within the grace the dead peer keeps its WireGuard entry.
			if in, err := inWireGuard(o, pub); err != nil {
				t.Fatal(err)
			} else if !in && time.Since(deadAt[o]) < grace-time.Second {
				t.Errorf("%s removed dead d from WireGuard before dead_peer_grace (%v)", o.Name, grace)
			}
		}
		for _, o := range observers {
			waitPeer(tc, o, pub, "removes dead d after the grace", grace+15*time.Second, func(p harness.StatusPeer, ok bool) error {
				if ok {
					return fmt.Errorf("d still listed as %q", p.State)
				}
				return nil
			})
			waitNotInWireGuard(tc, o, pub, "d", 5*time.Second)
			after := time.Since(deadAt[o])
			t.Logf("TIMING kill -9: %s removed d from status and WireGuard %v after seeing it dead (grace %v), %v after SIGKILL",
				o.Name, after.Round(time.Millisecond), grace, time.Since(start).Round(time.Millisecond))
			if after < grace-time.Second {
				t.Errorf("%s removed d %v after declaring it dead, before dead_peer_grace %v", o.Name, after, grace)
			}
		}
	})

	// The survivors still form a mesh.
	if err := harness.MeshProblem(a, b); err != nil {
		t.Errorf("survivors: %v", err)
	}
}

// TestRejoinFromPeerCache: a node whose only seed is gone rejoins through
// its persisted peer cache.
func TestRejoinFromPeerCache(t *testing.T) {
	tc := newCluster(t)
	a := tc.AddNode(harness.NodeSpec{Name: "a", Tags: role("web")})
	b := tc.AddNode(harness.NodeSpec{Name: "b", Tags: role("app"), Join: []string{a.GossipAddr()}})
	c := tc.AddNode(harness.NodeSpec{Name: "c", Tags: role("db"), Join: []string{a.GossipAddr()}})
	tc.Start(a, b, c)
	tc.WaitMesh(meshTimeout, a, b, c) // c learned b through a
	self := selves(t, tc, a, b, c)

	tc.Stop(c)
	tc.Kill(a) // for good
	start := time.Now()
	tc.Start(c)
	tc.WaitMesh(meshTimeout*2, b, c)
	toMesh := time.Since(start)
	tc.Ping(c, self[b].Self.Address, pingTimeout)
	tc.Ping(c, self[b].Self.Address6, pingTimeout)
	tc.Ping(b, self[c].Self.Address, pingTimeout)
	t.Logf("TIMING rejoin from peer cache (seed dead): restart -> b and c up for each other: %v; -> pings: %v",
		toMesh.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
