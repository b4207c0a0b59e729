package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// relRejoinBound is how soon a restarted node must be up again on every
// node once it runs (a join is one push/pull away).
const relRejoinBound = 10 * time.Second

// TestRelRejoinThroughRestartedSeed: x is killed and declared dead by a, b
// and c; then its seed a restarts (so a holds no record of x's death, while
// b and c still do, for memberlist's 30 s GossipToTheDeadTime); 10 s after
// the kill, when the death broadcasts are spent, x restarts and joins
// through a. Every node must list x up, and reach it, within
// relRejoinBound of x's start.
//
// This is what the churn showed: a restarted node that joins through a
// contact without the stale death record is never told to refute it, so the
// members that hold the record ignore its alive messages (same or lower
// incarnation) and keep it removed from status, WireGuard and their sets
// while x's own status shows every peer up. It heals only when they reap
// the record or x push/pulls with one of them.
func TestRelRejoinThroughRestartedSeed(t *testing.T) {
	f := newRelFixture(t, grace)
	tc := f.tc
	a := relAdd(f, "a", role("web"))
	b := relAdd(f, "b", role("app"), a)
	c := relAdd(f, "c", role("db"), a)
	x := relAdd(f, "x", role("web"), a)
	relStart(t, f)
	xPub := f.self[x].Self.PublicKey

	killed := time.Now()
	tc.Kill(x)
	if _, err := waitNodes([]*harness.Node{a, b, c}, killed, 30*time.Second, relPeerIs(xPub, harness.StateDead, x)); err != nil {
		t.Fatalf("x is declared dead: %v", err)
	}
	tc.Kill(a)
	tc.Start(a)
	tc.WaitMesh(meshTimeout, a, b, c)
	// Let the death broadcasts run out (a few gossip rounds), well within
	// the 30 s memberlist keeps the dead record.
	tc.WaitFor("10 s since the kill", 20*time.Second, func() error {
		if d := time.Since(killed); d < 10*time.Second {
			return fmt.Errorf("%v since the kill", relMS(d))
		}
		return nil
	})

	start := time.Now()
	tc.Start(x)
	first := relFirstStatus(tc, x, 20*time.Second)
	t.Logf("x answers %v after start, peers up in its first status: %v", relMS(time.Since(start)), relPeersUp(first))
	at, err := waitNodes(f.nodes, start, relRejoinBound, func(n *harness.Node) error {
		if err := relPeersExactly(f, f.nodes)(n); err != nil {
			return err
		}
		if n != x {
			return n.Ping(f.self[x].Self.Address)
		}
		return nil
	})
	if err != nil {
		t.Errorf("x restarted and joined through a, which restarted after x died: within %v: %v", relRejoinBound, err)
		relWaitMesh(t, tc, 90*time.Second, f.nodes...)
		relTiming(t, "restart through a restarted seed: the mesh is whole %v after x's start (bound %v)", relMS(time.Since(start)), relRejoinBound)
		return
	}
	var worst time.Duration
	for _, d := range at {
		worst = max(worst, d)
	}
	relTiming(t, "restart through a restarted seed: every node lists and pings x %v after x's start", relMS(worst))
}
