package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// TestRelCrashRestart: app node b is killed with SIGKILL while web node a
// streams to it (tcp/8080, IPv4 and IPv6) and restarted.
//
//   - kill -9 under traffic: b restarts with its overlay addresses and its
//     address claim; its first status already reports the persisted policy
//     v2 (its policy_file still holds v1); the table the crash left is
//     reconciled: exactly one table inet segmesh with the layout of a node
//     that never crashed, no element beyond what v2 and the membership
//     imply; the mesh is whole again with every peer listed once in status
//     and `wg show` on every node; both of a's connections carry data again.
//   - kill -9 with a tampered table: a leftover table whose layout differs
//     (an accept-all rule inserted) is replaced by this version's layout.
//   - reboot while cut off: b is killed, its table deleted (as after a
//     reboot) and its underlay cut before it starts. Alone, it enforces the
//     persisted v2 compiled for no peers (exactly the model's sets for an
//     empty membership, fail-closed final rule) with no peer configured;
//     when the underlay returns it rejoins and the streams resume.
func TestRelCrashRestart(t *testing.T) {
	f := newRelFixture(t, grace)
	tc := f.tc
	a := relAdd(f, "a", role("web"))
	b := relAdd(f, "b", role("app"), a)
	c := relAdd(f, "c", role("db"), a)
	relStart(t, f)
	v2 := relApply(t, f, a, relPolicyV2, f.nodes...)
	claimFile := filepath.Join(b.Dir, "state", "address.json")
	claim, err := os.ReadFile(claimFile)
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, tc, b.Namespace, "serve-b", []int{relStreamPort}, nil)
	s4 := relStream(t, tc, a, "stream-a-b4", relAddr(f, b, false, relStreamPort))
	s6 := relStream(t, tc, a, "stream-a-b6", relAddr(f, b, true, relStreamPort))
	streams := map[string]*harness.Proc{"IPv4": s4, "IPv6": s6}

	// checkFirst checks b's first status after a start.
	checkFirst := func(t *testing.T, first *harness.Status) {
		t.Helper()
		if first.Policy.Version != v2.version || first.Policy.Hash != v2.hash {
			t.Errorf("b's first status: policy %+v, want the persisted v%d %s", first.Policy, v2.version, v2.hash)
		}
		if first.Self.Address != f.self[b].Self.Address || first.Self.Address6 != f.self[b].Self.Address6 {
			t.Errorf("b came back as %s %s, was %s %s", first.Self.Address, first.Self.Address6,
				f.self[b].Self.Address, f.self[b].Self.Address6)
		}
		if now, err := os.ReadFile(claimFile); err != nil || !bytes.Equal(now, claim) {
			t.Errorf("address claim changed across the restart (%v): %s, was %s", err, now, claim)
		}
	}
	// recovered waits for the whole mesh, the model's sets, every peer once
	// and both streams echoing again; it logs the TIMINGs.
	recovered := func(t *testing.T, what string, from time.Time, fromWhat string) {
		t.Helper()
		tc := tc.With(t)
		tc.WaitMesh(meshTimeout, f.nodes...)
		meshAfter := time.Since(from)
		at, err := waitNodes(f.nodes, from, 20*time.Second, both(relSetsMatch(f), relPeersExactly(f, f.nodes)))
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
		var worst time.Duration
		for _, d := range at {
			worst = max(worst, d)
		}
		relTiming(t, "%s: mesh whole %v after %s; every node enforces the model's sets with each peer once in status and wg %v after %s",
			what, relMS(meshAfter), fromWhat, relMS(worst), fromWhat)
		for fam, s := range streams {
			first := relResumed(tc, s, fmt.Sprintf("a's %s stream to b resumes", fam), from, 30*time.Second)
			relTiming(t, "%s: a -> b tcp/%d %s stream (echo every 50ms, same connection) echoes again %v after %s",
				what, relStreamPort, fam, relMS(first.Sub(from)), fromWhat)
		}
	}

	t.Run("kill -9 under traffic", func(t *testing.T) {
		tc := tc.With(t)
		killed := time.Now()
		tc.Kill(b)
		left, err := hasTable(b.Namespace, "inet", "segmesh")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the crash left table inet segmesh in b's namespace: %v", left)
		if left {
			// A stale element in the kept table: the restart must drop it.
			if out, err := b.Exec("nft", "add", "element", "inet", "segmesh", "local4", "{ 100.80.99.99 }"); err != nil {
				t.Fatalf("add a stale element: %v: %s", err, out)
			}
		}
		start := time.Now()
		tc.Start(b)
		first := relFirstStatus(tc, b, 20*time.Second)
		answered := time.Since(start)
		checkFirst(t, first)
		t.Logf("b's first status %v after start: peers up %v", relMS(answered), relPeersUp(first))
		relCheckTable(t, b, c, "right after the restart")
		if err := relSetsSubset(f, b); err != nil {
			t.Errorf("right after the restart: b: %v", err)
		}
		if err := finalIs("drop")(b); err != nil {
			t.Errorf("right after the restart: b: %v", err)
		}
		relTiming(t, "kill -9 and restart: b answers status %v after start (%v after SIGKILL)", relMS(answered), relMS(time.Since(killed)))
		recovered(t, "kill -9 and restart", start, "the restart")
		relCheckTable(t, b, c, "after the recovery")
	})

	t.Run("kill -9 with a tampered table", func(t *testing.T) {
		tc := tc.With(t)
		tc.Kill(b)
		// A leftover table of another layout, here one that accepts
		// everything first: it must not survive the restart.
		if out, err := b.Exec("nft", "insert", "rule", "inet", "segmesh", "mesh_in", "accept"); err != nil {
			t.Fatalf("tamper with b's table: %v: %s", err, out)
		}
		start := time.Now()
		tc.Start(b)
		first := relFirstStatus(tc, b, 20*time.Second)
		checkFirst(t, first)
		relCheckTable(t, b, c, "right after the restart over a tampered table")
		if err := relSetsSubset(f, b); err != nil {
			t.Errorf("right after the restart over a tampered table: b: %v", err)
		}
		recovered(t, "kill -9 and restart over a tampered table", start, "the restart")
	})

	t.Run("reboot while cut off", func(t *testing.T) {
		tc := tc.With(t)
		tc.Kill(b)
		if out, err := b.Exec("nft", "delete", "table", "inet", "segmesh"); err != nil {
			t.Fatalf("delete b's table: %v: %s", err, out)
		}
		if err := b.LinkDown(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		tc.Start(b)
		first := relFirstStatus(tc, b, 20*time.Second)
		checkFirst(t, first)
		if up := relPeersUp(first); len(up) > 0 {
			t.Errorf("b is cut off but its first status shows peers up: %v", up)
		}
		relCheckTable(t, b, c, "alone after the reboot")
		m, ms := f.snapshot()
		want := m.expectedSets(ms[b], nil)
		alone := func(n *harness.Node) error {
			got, err := relSets(n)
			if err != nil {
				return err
			}
			if d := want.diff(got); d != "" {
				return fmt.Errorf("sets are not v%d's for no peers: %s", v2.version, d)
			}
			if err := finalIs("drop")(n); err != nil {
				return err
			}
			keys, err := relWGKeys(n)
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				return fmt.Errorf("wg show lists peers %v while cut off", keys)
			}
			return nil
		}
		// It stays so while its joins fail.
		if err := holdsFor([]*harness.Node{b}, 2*time.Second, alone); err != nil {
			t.Errorf("alone after the reboot: %v", err)
		}
		restored := time.Now()
		if err := b.LinkUp(); err != nil {
			t.Fatal(err)
		}
		t.Logf("b ran alone for %v", relMS(restored.Sub(start)))
		recovered(t, "reboot while cut off (table deleted, underlay down at start)", restored, "the underlay returned")
	})
}
