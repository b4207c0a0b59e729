package node

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segmesh/segmesh/metrics"
)

// applyCount is the sample count of segmesh_policy_apply_duration_seconds.
func applyCount(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "segmesh_policy_apply_duration_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("segmesh_policy_apply_duration_seconds not gathered")
	return 0
}

// A policy accepted while a sync is under way (after that sync compiled
// the sets) is recorded as applied by the sync that enforces it, not by
// the one it arrived during.
func TestApplyDurationWaitsForTheSyncThatEnforces(t *testing.T) {
	sb := newSyncBench(t, false)
	reg, rec := metrics.NewRegistry(metricsSource{sb.n})
	sb.n.mu.Lock()
	sb.n.recorder = rec
	sb.n.mu.Unlock()

	sb.n.sync() // enforces the policy newSyncBench proposed
	if c := applyCount(t, reg); c != 1 {
		t.Fatalf("after the first sync: %d apply samples, want 1", c)
	}

	second := strings.Replace(benchPolicy, "tcp/6432", "tcp/6433", 1)
	sb.fw.onApply = func() {
		sb.fw.onApply = nil
		if _, err := sb.n.propose([]byte(second), ApplyOptions{AppliedBy: "test"}); err != nil {
			t.Errorf("propose during the sync: %v", err)
		}
	}
	peer := sb.member(t, 0, sb.newKey(t), "app") // a change, so the next sync applies
	sb.gossip.setMembers(peer)
	sb.n.sync()
	if c := applyCount(t, reg); c != 1 {
		t.Fatalf("a policy accepted during a sync that compiled the previous one was recorded as applied (%d samples, want 1)", c)
	}
	sb.n.sync() // compiles and enforces the second policy
	if c := applyCount(t, reg); c != 2 {
		t.Fatalf("after the sync that enforces the second policy: %d samples, want 2", c)
	}
	if !strings.Contains(sb.n.policy.doc.Content, "tcp/6433") {
		t.Fatal("the second policy is not the active one")
	}
}
