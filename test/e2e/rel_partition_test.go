package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// relWatchStates polls the status of the observers until d has passed since
// from and returns, per observer, the states it showed for the peer with
// key pub (in order, without repeats; "gone" when not listed). It is the
// wait of a cut that lasts a fixed time, spent observing.
func relWatchStates(observers []*harness.Node, pub string, from time.Time, d time.Duration) map[*harness.Node][]string {
	seen := map[*harness.Node][]string{}
	_ = harness.WaitFor(d+time.Minute, func() error {
		for _, o := range observers {
			st, err := o.Status()
			state := "error"
			if err == nil {
				state = "gone"
				if p, ok := st.Peer(pub); ok {
					state = p.State
				}
			}
			if s := seen[o]; len(s) == 0 || s[len(s)-1] != state {
				seen[o] = append(s, state)
			}
		}
		if time.Since(from) < d {
			return fmt.Errorf("observing until %v have passed", d)
		}
		return nil
	})
	return seen
}

// relStatesText renders relWatchStates' result.
func relStatesText(seen map[*harness.Node][]string, nodes []*harness.Node) string {
	var parts []string
	for _, n := range nodes {
		parts = append(parts, n.Name+": "+strings.Join(seen[n], " -> "))
	}
	return strings.Join(parts, "; ")
}

// TestRelPartitionFlap: app node b's underlay is cut for 8 s, less than
// the 30 s dead_peer_grace, while web node a streams to it. During the cut
// every node keeps the others' access (the model's sets for the full
// membership, WireGuard peers kept); after the underlay returns the same
// TCP connection carries data again and the mesh is whole.
func TestRelPartitionFlap(t *testing.T) {
	const flapGrace, cut = 30 * time.Second, 8 * time.Second
	f := newRelFixture(t, flapGrace)
	tc := f.tc
	a := relAdd(f, "a", role("web"))
	b := relAdd(f, "b", role("app"), a)
	c := relAdd(f, "c", role("db"), a)
	relStart(t, f)
	startServer(t, tc, b.Namespace, "serve-b", []int{relStreamPort}, nil)
	s4 := relStream(t, tc, a, "stream-a-b4", relAddr(f, b, false, relStreamPort))
	s6 := relStream(t, tc, a, "stream-a-b6", relAddr(f, b, true, relStreamPort))

	down := time.Now()
	if err := b.LinkDown(); err != nil {
		t.Fatal(err)
	}
	relStalled(tc, s4, "the IPv4 stream stalls while b is cut off", time.Second, 5*time.Second)
	seen := relWatchStates([]*harness.Node{a, c}, f.self[b].Self.PublicKey, down, cut)
	t.Logf("during the %v cut, a and c saw b: %s", cut, relStatesText(seen, []*harness.Node{a, c}))
	// Still within the grace: nobody lost access, nobody dropped a peer.
	for _, n := range f.nodes {
		if err := relSetsMatch(f)(n); err != nil {
			t.Errorf("%s at the end of the cut (within dead_peer_grace %v): %v", n.Name, flapGrace, err)
		}
		keys, err := relWGKeys(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != len(f.nodes)-1 {
			t.Errorf("%s at the end of the cut: wg show lists %d peers, want %d", n.Name, len(keys), len(f.nodes)-1)
		}
	}

	restored := time.Now()
	if err := b.LinkUp(); err != nil {
		t.Fatal(err)
	}
	for fam, s := range map[string]*harness.Proc{"IPv4": s4, "IPv6": s6} {
		first := relResumed(tc, s, "a's "+fam+" stream to b resumes on the same connection", restored, 30*time.Second)
		relTiming(t, "underlay flap %v (dead_peer_grace %v): a -> b tcp/%d %s stream (same connection) echoes again %v after the underlay returned",
			cut, flapGrace, relStreamPort, fam, relMS(first.Sub(restored)))
	}
	tc.WaitMesh(60*time.Second, f.nodes...)
	whole := time.Since(restored)
	if _, err := waitNodes(f.nodes, restored, 10*time.Second, both(relSetsMatch(f), relPeersExactly(f, f.nodes))); err != nil {
		t.Errorf("after the flap: %v", err)
	}
	relTiming(t, "underlay flap %v (dead_peer_grace %v): every node sees all others up %v after the underlay returned", cut, flapGrace, relMS(whole))
	if err := relSameConnection(s4); err != nil {
		t.Error(err)
	}
}

// TestRelSoakPartition (soak): app node b's underlay is cut for 90 s, well
// past memberlist's dead timeout and the 5 s dead_peer_grace, while policy
// v2 and then v3 are applied on the other side. After the underlay returns
// the mesh becomes whole by itself; b catches up to v3 and every node
// enforces the model's sets.
func TestRelSoakPartition(t *testing.T) {
	relRequireSoak(t)
	const cut = 90 * time.Second
	f := newRelFixture(t, grace)
	tc := f.tc
	a := relAdd(f, "a", role("web"))
	b := relAdd(f, "b", role("app"), a)
	c := relAdd(f, "c", role("db"), a)
	d := relAdd(f, "d", role("web"), a)
	v1 := relStart(t, f)
	rest := []*harness.Node{a, c, d}
	bPub := f.self[b].Self.PublicKey

	down := time.Now()
	if err := b.LinkDown(); err != nil {
		t.Fatal(err)
	}
	// The others declare b dead and drop it after the grace; b does the same
	// with them.
	gone := func(of string) func(*harness.Node) error {
		return func(n *harness.Node) error {
			st, err := n.Status()
			if err != nil {
				return err
			}
			if of == "" {
				if up := relPeersUp(st); len(up) > 0 {
					return fmt.Errorf("still sees %v up", up)
				}
				if len(st.Peers) > 0 {
					return fmt.Errorf("still lists %d peers", len(st.Peers))
				}
				return nil
			}
			if p, ok := st.Peer(of); ok {
				return fmt.Errorf("still lists b as %q", p.State)
			}
			return nil
		}
	}
	at, err := waitNodes(rest, down, 45*time.Second, gone(bPub))
	if err != nil {
		t.Fatalf("the others drop b: %v", err)
	}
	var worst time.Duration
	for _, took := range at {
		worst = max(worst, took)
	}
	relTiming(t, "partition: the others dropped b (dead + grace %v) %v after the cut", grace, relMS(worst))
	if _, err := waitNodes([]*harness.Node{b}, down, 45*time.Second, gone("")); err != nil {
		t.Fatalf("b drops the others: %v", err)
	}
	// Both sides enforce v1 for the membership they still see.
	if err := relSetsAmong(f, []*harness.Node{b})(b); err != nil {
		t.Errorf("b alone: %v", err)
	}
	if _, err := waitNodes(rest, down, 10*time.Second, relSetsAmong(f, rest)); err != nil {
		t.Errorf("without b: %v", err)
	}

	// Policy moves on without b.
	var last applied
	tc.WaitFor("the cut lasts", cut, func() error {
		if time.Since(down) < cut/3 {
			return fmt.Errorf("%v into the cut", relMS(time.Since(down)))
		}
		return nil
	})
	last = relApply(t, f, a, relPolicyV2, rest...)
	tc.WaitFor("the cut lasts", cut, func() error {
		if time.Since(down) < 2*cut/3 {
			return fmt.Errorf("%v into the cut", relMS(time.Since(down)))
		}
		return nil
	})
	last = relApply(t, f, c, relPolicyV3, rest...)
	if p, err := policyOf(b); err != nil || p.Version != v1.Version {
		t.Errorf("b, cut off, has policy %+v (%v), want v%d", p, err, v1.Version)
	}
	tc.WaitFor("the cut lasts", cut, func() error {
		if time.Since(down) < cut {
			return fmt.Errorf("%v into the cut", relMS(time.Since(down)))
		}
		return nil
	})

	restored := time.Now()
	if err := b.LinkUp(); err != nil {
		t.Fatal(err)
	}
	relWaitMesh(t, tc, 90*time.Second, f.nodes...)
	whole := time.Since(restored)
	at, err = waitNodes(f.nodes, restored, 30*time.Second, both(hasPolicy(last.version, last.hash), both(relSetsMatch(f), relPeersExactly(f, f.nodes))))
	if err != nil {
		t.Errorf("after the heal: %v", err)
	}
	relTiming(t, "partition %v healed: every node sees all others up %v after the underlay returned", cut, relMS(whole))
	relTiming(t, "partition %v healed: b enforces the newest policy v%d (applied during the cut) %v after the underlay returned",
		cut, last.version, relMS(at[b]))
	tc.Ping(b, f.self[a].Self.Address, pingTimeout)
	tc.Ping(a, f.self[b].Self.Address6, pingTimeout)
}
