package node

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

const policyV = `mode: enforce
segments:
  web: {role: web}
  db: {role: db}
rules:
  - name: web-to-db
    from: [web]
    to: [db]
    ports: [tcp/5432]
`

func u64(v uint64) *uint64 { return &v }

// Security invariant 2: the table is installed and the persisted policy
// enforced before the interface exists, and gossip starts last.
func TestStartsFailClosed(t *testing.T) {
	r := newRig(t, t.TempDir(), "")
	waitFor(t, "gossip start", func() bool { return slices.Contains(r.ev.list(), "gossip.start") })
	got := r.ev.list()
	want := []string{"fw.install", "fw.apply", "mesh.open", "mesh.up", "gossip.new", "gossip.start"}
	if !slices.Equal(got[:len(want)], want) {
		t.Fatalf("start order %v, want %v", got, want)
	}
	if d := r.fw.desired(); len(d.Ports)+len(d.ICMP)+len(d.Any) != 0 || len(d.Local) != 2 {
		t.Fatalf("no policy must allow nothing: %+v", d)
	}
	r.shutdown()
	if l := r.ev.list(); !slices.Contains(l, "gossip.leave") || l[len(l)-1] != "fw.remove" && !slices.Contains(l, "fw.remove") {
		t.Fatalf("graceful stop: %v", l)
	}
}

func TestApplyVersionsPersistAndPublish(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, dir, "")
	d1, err := r.n.ApplyPolicy([]byte(policyV), ApplyOptions{Expect: u64(0), AppliedBy: "alice@self"})
	if err != nil || d1.Version != 1 || d1.AppliedBy != "alice@self" {
		t.Fatalf("apply: %+v %v", d1, err)
	}
	if _, err := r.n.ApplyPolicy([]byte(policyV+"\n"), ApplyOptions{Expect: u64(0), AppliedBy: "bob@self"}); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("stale --expect-version must fail: %v", err)
	}
	if _, err := r.n.ApplyPolicy([]byte("mode: enforce\nbogus: 1\n"), ApplyOptions{AppliedBy: "x"}); err == nil {
		t.Fatal("an invalid policy must be refused")
	}
	d2, err := r.n.ApplyPolicy([]byte(policyV+"# v2\n"), ApplyOptions{Expect: u64(1), AppliedBy: "bob@self"})
	if err != nil || d2.Version != 2 {
		t.Fatalf("apply v2: %+v %v", d2, err)
	}
	r.gossip.mu.Lock()
	published := len(r.gossip.published)
	r.gossip.mu.Unlock()
	if published != 2 {
		t.Fatalf("published %d documents, want 2", published)
	}
	if st := r.n.Status(); st.Policy.Version != 2 || st.Policy.Hash != d2.Hash || !slices.Equal(st.Self.Segments, []string{"db"}) {
		t.Fatalf("status: %+v", st)
	}
	r.shutdown()

	// Restart: the persisted policy is enforced before gossip starts.
	r2 := newRig(t, dir, "")
	waitFor(t, "start", func() bool { return slices.Contains(r2.ev.list(), "gossip.start") })
	if st := r2.n.Status(); st.Policy.Version != 2 {
		t.Fatalf("persisted policy not loaded: %+v", st.Policy)
	}
	if h := r2.n.policy.history; len(h) != 2 || h[0].Version != 1 {
		t.Fatalf("history: %+v", h)
	}
}

// Security invariant 5: never back to an older policy, whoever re-sends it.
func TestMergeNewerOnly(t *testing.T) {
	r := newRig(t, t.TempDir(), "")
	doc := func(v uint64, content string) []byte {
		b, _ := acl.NewDocument([]byte(content), v, "peer", time.Now()).Encode()
		return b
	}
	h := r.gossip.docs
	if !h.MergeDocument(docKindPolicy, doc(3, policyV)) {
		t.Fatal("v3 must be accepted")
	}
	if h.MergeDocument(docKindPolicy, doc(2, policyV+"# older\n")) || h.MergeDocument(docKindPolicy, doc(3, policyV)) {
		t.Fatal("older or identical documents must be refused")
	}
	a, b := doc(4, policyV+"# a\n"), doc(4, policyV+"# b\n")
	da, _, _ := acl.DecodeDocument(a)
	db, _, _ := acl.DecodeDocument(b)
	lo, hi := a, b
	if da.Hash > db.Hash {
		lo, hi = b, a
	}
	if !h.MergeDocument(docKindPolicy, lo) || !h.MergeDocument(docKindPolicy, hi) || h.MergeDocument(docKindPolicy, lo) {
		t.Fatal("equal versions: the higher hash wins, the lower never comes back")
	}
	tampered := acl.NewDocument([]byte(policyV), 9, "evil", time.Now())
	tampered.Content += "\n# changed after hashing\n"
	tb, _ := tampered.Encode()
	if h.MergeDocument(docKindPolicy, tb) || h.MergeDocument(docKindPolicy, []byte("{garbage")) || h.MergeDocument("other", doc(10, policyV)) {
		t.Fatal("tampered, garbage and unknown-kind documents must be refused")
	}
	if v := r.n.Status().Policy.Version; v != 4 {
		t.Fatalf("active version %d, want 4", v)
	}
	if docs := h.Documents(); len(docs[docKindPolicy]) == 0 {
		t.Fatal("the active policy must travel in push/pull")
	}
}

// policy_file is proposed only when it changed since this node last read it.
func TestPolicyFileOnlyWhenChanged(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pf, []byte(policyV), 0o644)
	r := newRig(t, dir, pf)
	if v := r.n.Status().Policy.Version; v != 1 {
		t.Fatalf("policy_file at first start: version %d", v)
	}
	// The mesh moves on to v2 (another node applied it).
	if _, err := r.n.ApplyPolicy([]byte(policyV+"# v2\n"), ApplyOptions{AppliedBy: "other"}); err != nil {
		t.Fatal(err)
	}
	if err := r.n.Reload(); err != nil {
		t.Fatal(err)
	}
	if v := r.n.Status().Policy.Version; v != 2 {
		t.Fatalf("a stale policy_file rolled the policy back: version %d", v)
	}
	os.WriteFile(pf, []byte(policyV+"# edited\n"), 0o644)
	if err := r.n.Reload(); err != nil {
		t.Fatal(err)
	}
	if st := r.n.Status(); st.Policy.Version != 3 || st.Policy.Hash != acl.Hash([]byte(policyV+"# edited\n")) {
		t.Fatalf("an edited policy_file must be proposed: %+v", st.Policy)
	}
	r.shutdown()
	r2 := newRig(t, dir, pf)
	if v := r2.n.Status().Policy.Version; v != 3 {
		t.Fatalf("restart with an unchanged policy_file must not propose it: version %d", v)
	}
}

// Peers gain access through the compiled sets and, once removed, lose
// their conntrack entries (security invariant 3).
func TestEnforceAndConntrackOnRemoval(t *testing.T) {
	r := newRig(t, t.TempDir(), "")
	if _, err := r.n.ApplyPolicy([]byte(policyV), ApplyOptions{AppliedBy: "t"}); err != nil {
		t.Fatal(err)
	}
	web := newTestNode(t)
	rec := gossip.Record{Format: 1, Name: "web-1", PublicKey: web.pub.String(), ListenPort: 51820,
		Address4: mesh.Candidate4(r.cfg.Network, web.pub, 0), Address6: mesh.Address6(r.cfg.Network6, web.pub),
		Claimed: time.Now().UnixNano(), Tags: map[string]string{"role": "web"}}
	m := web.withRecord(rec, gossip.StateAlive)
	r.gossip.setMembers(m)
	waitFor(t, "web-1 allowed to tcp/5432", func() bool {
		d := r.fw.desired()
		return len(d.Ports) == 2 && d.Ports[0].PortLo == 5432
	})
	// Admitted: entries a previous holder of its addresses left are cleared.
	wantConntrack(t, r, "admitted", rec.Address4, rec.Address6)
	m.State, m.StateSince = gossip.StateLeft, time.Now()
	r.gossip.setMembers(m)
	wantConntrack(t, r, "departed", rec.Address4, rec.Address6)
	if d := r.fw.desired(); len(d.Ports) != 0 {
		t.Fatalf("a departed peer keeps access: %+v", d.Ports)
	}
}

// wantConntrack expects the next conntrack deletion to cover addrs.
func wantConntrack(t *testing.T, r *rig, when string, addrs ...netip.Addr) {
	t.Helper()
	select {
	case got := <-r.conntrak:
		for _, a := range addrs {
			if !slices.Contains(got, a) {
				t.Fatalf("%s: conntrack deleted for %v, want %v", when, got, addrs)
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: conntrack entries of %v not deleted", when, addrs)
	}
}
