package e2e

import (
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// TestFullMesh: three nodes form a full mesh: every status lists the two
// others up, every node pings every other's overlay IPv4 and IPv6, and
// `wg show` lists both peers with a latest handshake.
func TestFullMesh(t *testing.T) {
	tc := newCluster(t)
	a := tc.AddNode(harness.NodeSpec{Name: "a", Tags: role("web")})
	b := tc.AddNode(harness.NodeSpec{Name: "b", Tags: role("app"), Join: []string{a.GossipAddr()}})
	c := tc.AddNode(harness.NodeSpec{Name: "c", Tags: role("db"), Join: []string{a.GossipAddr()}})
	nodes := []*harness.Node{a, b, c}

	start := time.Now()
	tc.Start(nodes...)
	tc.WaitMesh(meshTimeout, nodes...)
	toMesh := time.Since(start)

	self := selves(t, tc, nodes...)
	checkPeerViews(t, tc, self, nodes...)
	// "up" means alive in gossip and configured in WireGuard.
	checkWireGuard(t, tc, self, false, nodes...)
	for _, n := range nodes {
		if got := self[n].Self.Tags["role"]; got == "" {
			t.Errorf("%s: self.tags lack role: %v", n.Name, self[n].Self.Tags)
		}
	}
	pingAll(t, tc, self, nodes...)
	toPing := time.Since(start)
	checkWireGuard(t, tc, self, true, nodes...)
	t.Logf("TIMING full mesh of 3 nodes: start -> every status shows all peers up: %v; -> every overlay IPv4+IPv6 ping answered: %v",
		toMesh.Round(time.Millisecond), toPing.Round(time.Millisecond))
}

// TestLateJoiner: a node that knows only one member reaches all.
func TestLateJoiner(t *testing.T) {
	tc := newCluster(t)
	a := tc.AddNode(harness.NodeSpec{Name: "a", Tags: role("web")})
	b := tc.AddNode(harness.NodeSpec{Name: "b", Tags: role("web"), Join: []string{a.GossipAddr()}})
	c := tc.AddNode(harness.NodeSpec{Name: "c", Tags: role("app"), Join: []string{a.GossipAddr()}})
	tc.Start(a, b, c)
	tc.WaitMesh(meshTimeout, a, b, c)

	// d knows only b, which did not seed anyone.
	d := tc.AddNode(harness.NodeSpec{Name: "d", Tags: role("db"), Join: []string{b.GossipAddr()}})
	start := time.Now()
	tc.Start(d)
	all := []*harness.Node{a, b, c, d}
	tc.WaitMesh(meshTimeout, all...)
	toMesh := time.Since(start)

	self := selves(t, tc, all...)
	checkPeerViews(t, tc, self, all...)
	for _, o := range []*harness.Node{a, b, c} {
		tc.Ping(d, self[o].Self.Address, pingTimeout)
		tc.Ping(d, self[o].Self.Address6, pingTimeout)
		tc.Ping(o, self[d].Self.Address, pingTimeout)
	}
	t.Logf("TIMING late joiner (seed: one member): start -> 4-node full mesh: %v; -> pings both ways: %v",
		toMesh.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
