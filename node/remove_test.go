package node

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/gossip"
)

func TestRemoveNode(t *testing.T) {
	r := newRig(t, t.TempDir(), "")
	alive, dead := newTestNode(t), newTestNode(t)
	a := alive.member("alive-1", gossip.StateAlive, time.Now())
	d := dead.member("dead-1", gossip.StateDead, time.Now())
	d.StateSince = time.Now()
	r.gossip.setMembers(a, d)
	waitFor(t, "both peers in status", func() bool { return len(r.n.Status().Peers) == 2 })

	if _, err := r.n.RemoveNode("alive-1", "ops"); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("a live node must not be removable: %v", err)
	}
	res, err := r.n.RemoveNode("dead-1", "ops")
	if err != nil || res.PublicKey != dead.pub.String() {
		t.Fatalf("remove: %+v %v", res, err)
	}
	if st := r.n.Status(); len(st.Peers) != 1 || st.Peers[0].Name != "alive-1" {
		t.Fatalf("removed node still listed: %+v", st.Peers)
	}
	r.gossip.mu.Lock()
	pub := append([][]byte(nil), r.gossip.published...)
	r.gossip.mu.Unlock()
	var rm removal
	if len(pub) != 1 || json.Unmarshal(pub[0], &rm) != nil || rm.Node != dead.pub.String() {
		t.Fatalf("the removal must be published to the mesh: %q", pub)
	}
	if _, err := r.n.RemoveNode("nobody", "ops"); err == nil {
		t.Fatal("an unknown node is an error")
	}

	// From the mesh: a removal of a live node changes nothing; a repeat is not re-broadcast.
	b, _ := json.Marshal(removal{Node: alive.pub.String(), By: "evil", Time: time.Now()})
	r.gossip.docs.MergeDocument(docKindRemove, b)
	r.n.syncAndWait()
	if st := r.n.Status(); len(st.Peers) != 1 || st.Peers[0].State != api.StateUp {
		t.Fatalf("a removal cannot cut a live node: %+v", st.Peers)
	}
	if r.gossip.docs.MergeDocument(docKindRemove, b) {
		t.Fatal("a removal seen before is not re-broadcast")
	}
	r.gossip.mu.Lock()
	defer r.gossip.mu.Unlock()
	if !slices.Equal(r.gossip.forgotten, []string{dead.pub.String()}) {
		t.Fatalf("forgotten: %v", r.gossip.forgotten)
	}
}
