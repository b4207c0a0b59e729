package node

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/mesh"
	"github.com/segmesh/segmesh/quarantine"
)

const quarantinePolicyYAML = `mode: enforce
segments:
  web: {role: web}
  ops: {role: ops}
  db:  {role: db}
rules:
  - {name: ping, from: ["*"], to: ["*"], ports: [icmp]}
`

// TestDesiredQuarantine: a quarantined peer's addresses go to Drop on a
// node outside its --allow-from segments, to Forensic on one inside; on
// the quarantined node itself Self holds its addresses and Allow the
// allow-from members'.
func TestDesiredQuarantine(t *testing.T) {
	r := newRig(t, t.TempDir(), "")
	defer r.shutdown()
	if _, err := r.n.ApplyPolicy([]byte(quarantinePolicyYAML), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	x, ops := testKey(t), testKey(t)
	peers := []acl.Member{
		{Key: x.String(), Name: "x", Addr4: netip.MustParseAddr("100.80.0.7"), Addr6: mesh.Address6(r.cfg.Network6, x), Tags: map[string]string{"role": "web"}},
		{Key: ops.String(), Name: "ops1", Addr4: netip.MustParseAddr("100.80.0.8"), Addr6: mesh.Address6(r.cfg.Network6, ops), Tags: map[string]string{"role": "ops"}},
	}
	add := func(target mesh.Key, name string, allow ...string) {
		t.Helper()
		if _, err := r.n.quar.Add(quarantine.Entry{Target: target.String(), Name: name, Action: quarantine.ActionQuarantine,
			AllowFrom: allow, Time: time.Now().UnixNano()}); err != nil {
			t.Fatal(err)
		}
	}
	add(x, "x", "ops")
	r.n.mu.Lock()
	self := r.n.segmentsOf(r.n.cfg.Tags)
	q := r.n.desiredQuarantine(peers)
	r.n.mu.Unlock()
	if slices.Contains(self, "ops") {
		t.Fatalf("test premise: this node is in %v", self)
	}
	want := []netip.Addr{peers[0].Addr4, peers[0].Addr6}
	slices.SortFunc(want, func(a, b netip.Addr) int { return a.Compare(b) })
	if !slices.Equal(q.Drop, want) || len(q.Forensic)+len(q.Self)+len(q.Allow) != 0 {
		t.Fatalf("outside the allow-from segments: %+v, want Drop %v", q, want)
	}
	if st := r.n.Status(); len(st.Quarantined) != 1 || st.Quarantined[0].Node != "x" {
		t.Errorf("status quarantined %+v", st.Quarantined)
	}

	// A newer entry lets this node's segment (db) in: the forensic sets.
	add(x, "x", "db")
	r.n.mu.Lock()
	q = r.n.desiredQuarantine(peers)
	r.n.mu.Unlock()
	if !slices.Equal(q.Forensic, want) || len(q.Drop) != 0 {
		t.Fatalf("inside the allow-from segments: %+v, want Forensic %v", q, want)
	}

	// This node quarantined itself: Self and the ops member in Allow.
	add(r.n.pub, "self", "ops")
	r.n.mu.Lock()
	q = r.n.desiredQuarantine(peers)
	r.n.mu.Unlock()
	if len(q.Self) != 2 || !slices.Equal(q.Allow, sorted(peers[1].Addr4, peers[1].Addr6)) {
		t.Fatalf("self quarantined: %+v", q)
	}
	if st := r.n.Status(); !slices.ContainsFunc(st.Quarantined, func(v api.Quarantined) bool { return v.Self }) {
		t.Errorf("status does not mark this node: %+v", st.Quarantined)
	}
}

func sorted(a ...netip.Addr) []netip.Addr {
	slices.SortFunc(a, func(x, y netip.Addr) int { return x.Compare(y) })
	return a
}
