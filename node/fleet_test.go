package node

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/mesh"
	"github.com/segmesh/segmesh/peerapi"
)

func TestFleetTargets(t *testing.T) {
	peers := []api.Peer{
		{Name: "db-1", Address: "100.80.0.2", Address6: "fd00::2", State: api.StateUp},
		{Name: "v6-only", Address: "", Address6: "fd00::3", State: api.StateUp},
		{Name: "app-1", Address: "100.80.0.4", State: api.StateDead},
		{Name: "evil", State: api.StateUntrusted, Reason: "certificate: unknown CA"},
		{Name: "broken", State: api.StateUp},
	}
	ask, missing := fleetTargets(peers)
	if len(ask) != 2 || ask[0] != (targetOf("db-1", "100.80.0.2")) || ask[1] != targetOf("v6-only", "fd00::3") {
		t.Fatalf("asked %+v", ask)
	}
	want := []api.Missing{{Node: "app-1", Reason: "peer is dead"}, {Node: "evil", Reason: "peer is untrusted: certificate: unknown CA"},
		{Node: "broken", Reason: "no overlay address"}}
	if len(missing) != len(want) {
		t.Fatalf("missing %+v", missing)
	}
	for i := range want {
		if missing[i] != want[i] {
			t.Errorf("missing[%d] = %+v, want %+v", i, missing[i], want[i])
		}
	}
}

func TestAbsentHoldersAreMissing(t *testing.T) {
	r := newRig(t, t.TempDir(), "")
	defer r.shutdown()
	gone, present := testKey(t), testKey(t)
	now := time.Now()
	r.n.mu.Lock()
	r.n.book.observe(netip.MustParseAddr("100.80.0.9"), gone, "old-1", now.Add(-time.Hour), now.Add(-time.Minute))
	r.n.book.observe(netip.MustParseAddr("100.80.0.8"), present, "db-1", now.Add(-time.Hour), now)
	r.n.mu.Unlock()
	got := r.n.absentHolders([]api.Peer{{Name: "db-1", PublicKey: present.String()}})
	if len(got) != 1 || got[0].Node != "old-1" || !strings.Contains(got[0].Reason, "not in the mesh now (last seen 1m0s ago)") {
		t.Fatalf("absent holders %+v", got)
	}
	// Without the peer API, --fleet says so instead of answering partially.
	if _, err := r.n.FleetFlows(context.Background()); !errors.Is(err, errPeerAPIOff) {
		t.Fatalf("FleetFlows without the peer API: %v", err)
	}
}

func testKey(t *testing.T) mesh.Key {
	t.Helper()
	k, err := mesh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func targetOf(name, addr string) peerapi.Target {
	return peerapi.Target{Name: name, Addr: netip.MustParseAddr(addr)}
}
