package node

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// peerOf returns the view's entry for member name.
func (sb *syncBench) peerOf(t *testing.T, name string) peerView {
	t.Helper()
	sb.n.mu.Lock()
	defer sb.n.mu.Unlock()
	for _, p := range sb.n.view.peers {
		if p.name == name {
			return p
		}
	}
	t.Fatalf("%s not in the view", name)
	return peerView{}
}

// configured reports whether key is a WireGuard peer after the last sync.
func (sb *syncBench) configured(key mesh.Key) bool {
	sb.mesh.mu.Lock()
	defer sb.mesh.mu.Unlock()
	return slices.ContainsFunc(sb.mesh.peers, func(p mesh.Peer) bool { return p.PublicKey == key })
}

// allowedFrom reports whether the enforced sets let src reach tcp/5432.
func (sb *syncBench) allowedFrom(src netip.Addr) bool {
	return slices.ContainsFunc(sb.fw.desired().Ports, func(e acl.PortElement) bool { return e.Src == src && e.PortLo == 5432 })
}

func (sb *syncBench) newKey(t *testing.T) mesh.Key {
	t.Helper()
	k, err := mesh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func (sb *syncBench) applies() int {
	sb.fw.mu.Lock()
	defer sb.fw.mu.Unlock()
	return sb.fw.n
}

// A record is decoded and verified once per content: later syncs reuse
// the outcome, a changed record is verified again, a member gone from the
// list is dropped from the cache.
func TestSyncVerifiesRecordOncePerContent(t *testing.T) {
	sb := newSyncBench(t, true)
	ka, kb := sb.newKey(t), sb.newKey(t)
	a, b := sb.member(t, 0, ka, "web"), sb.member(t, 1, kb, "app")
	sb.gossip.setMembers(a, b)
	sb.n.sync()
	first := sb.n.records.entries[a.Name]
	if first == nil || first.rej != nil {
		t.Fatalf("a not verified: %+v", first)
	}
	sb.n.sync()
	if sb.n.records.entries[a.Name] != first {
		t.Fatal("an unchanged record was verified again")
	}
	a2 := sb.member(t, 0, ka, "db")
	sb.gossip.setMembers(a2, b)
	sb.n.sync()
	if e := sb.n.records.entries[a.Name]; e == first || !bytes.Equal(e.meta, a2.Meta) || e.vr.rec.Tags["role"] != "db" {
		t.Fatalf("a changed record must be verified again: %+v", e)
	}
	if got := sb.peerOf(t, a.Name).rec.Tags["role"]; got != "db" {
		t.Fatalf("view tags %q, want the new certificate's", got)
	}
	sb.gossip.setMembers(b)
	sb.n.sync()
	if _, ok := sb.n.records.entries[a.Name]; ok || len(sb.n.records.entries) != 1 {
		t.Fatalf("entries of departed members must go: %d left", len(sb.n.records.entries))
	}
}

// A revocation received after a record was verified and cached rejects it
// at the next sync: out of WireGuard and out of the sets (invariant 3).
func TestSyncCachedRecordRevoked(t *testing.T) {
	sb := newSyncBench(t, true)
	k := sb.newKey(t)
	m := sb.member(t, 0, k, "web")
	sb.gossip.setMembers(m)
	sb.n.sync()
	addr := sb.peerOf(t, m.Name).rec.Address4
	if !sb.configured(k) || !sb.allowedFrom(addr) {
		t.Fatal("web peer not admitted")
	}
	entry, err := ca.Revoke(sb.caPriv, ca.Revocation{PublicKey: k, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if added, err := sb.n.trust.revs.Add(entry); !added || err != nil {
		t.Fatalf("revocation not added: %v", err)
	}
	sb.n.sync()
	if p := sb.peerOf(t, m.Name); p.state != api.StateUntrusted || p.rejected == nil || p.rejected.reason != ReasonRevoked {
		t.Fatalf("revoked peer: state %s rejection %+v", p.state, p.rejected)
	}
	if sb.configured(k) || sb.allowedFrom(addr) {
		t.Fatal("a revoked peer keeps WireGuard or the sets")
	}
}

// A cached certificate is checked again when the time crosses its NotAfter
// (it expires) or its NotBefore (it becomes valid).
func TestSyncCachedCertificateTime(t *testing.T) {
	sb := newSyncBench(t, true)
	sb.notAfter = time.Hour
	k := sb.newKey(t)
	m := sb.member(t, 0, k, "web")
	sb.notBefore, sb.notAfter = time.Hour, 3*time.Hour
	kLate := sb.newKey(t)
	late := sb.member(t, 1, kLate, "web")
	sb.gossip.setMembers(m, late)
	sb.n.sync()
	if !sb.configured(k) || sb.configured(kLate) {
		t.Fatal("at start only the current certificate is valid")
	}
	if p := sb.peerOf(t, late.Name); p.rejected == nil || p.rejected.reason != ReasonBadCertificate {
		t.Fatalf("a certificate not valid yet: %+v", p.rejected)
	}
	sb.skew = 2 * time.Hour
	sb.n.sync()
	if p := sb.peerOf(t, m.Name); p.rejected == nil || p.rejected.reason != ReasonExpired {
		t.Fatalf("an expired certificate must be refused at the next sync: %+v", p.rejected)
	}
	if sb.configured(k) || !sb.configured(kLate) {
		t.Fatal("expired peer must leave WireGuard, the now valid one join it")
	}
}

// A new trust state (reload: other CA keys) re-verifies every record.
func TestSyncCacheFollowsTrustReload(t *testing.T) {
	sb := newSyncBench(t, true)
	k := sb.newKey(t)
	sb.gossip.setMembers(sb.member(t, 0, k, "web"))
	sb.n.sync()
	if !sb.configured(k) {
		t.Fatal("peer not configured")
	}
	otherPub, _, err := ca.GenerateCA()
	if err != nil {
		t.Fatal(err)
	}
	cas := []ed25519.PublicKey{otherPub}
	sb.n.mu.Lock()
	sb.n.trust = &trustState{cas: cas, cert: sb.n.trust.cert, revs: ca.NewRevocationList(cas)}
	sb.n.mu.Unlock()
	sb.n.sync()
	if sb.configured(k) {
		t.Fatal("a certificate of a CA no longer trusted stays accepted")
	}
}

// The sets are compiled and applied only when their inputs changed since
// the last successful apply; a failed apply is retried by the next sync.
func TestSyncAppliesOnlyOnChange(t *testing.T) {
	sb := newSyncBench(t, false)
	var conntrack [][]netip.Addr
	sb.n.deps.DeleteConntrack = func(a []netip.Addr) (int, error) { conntrack = append(conntrack, a); return len(a), nil }
	k := sb.newKey(t)
	web := sb.member(t, 0, k, "web")
	sb.gossip.setMembers(web)
	sb.n.sync()
	addr := sb.peerOf(t, web.Name).rec.Address4
	if !sb.allowedFrom(addr) || len(conntrack) != 1 {
		t.Fatalf("web peer: allowed %v, conntrack cleanups %v", sb.allowedFrom(addr), conntrack)
	}
	n := sb.applies()
	sb.n.sync()
	sb.n.sync()
	if got := sb.applies(); got != n || len(conntrack) != 1 {
		t.Fatalf("unchanged inputs: %d applies, %d conntrack cleanups; want none", got-n, len(conntrack)-1)
	}

	sb.fw.mu.Lock()
	sb.fw.fail = errors.New("netlink: boom")
	sb.fw.mu.Unlock()
	sb.gossip.setMembers(sb.member(t, 0, k, "cache")) // no longer in a segment that reaches db
	sb.n.sync()
	if sb.n.readiness() == nil || !sb.allowedFrom(addr) {
		t.Fatal("a failed apply must leave the node not ready with the old sets")
	}
	sb.fw.mu.Lock()
	sb.fw.fail = nil
	sb.fw.mu.Unlock()
	sb.n.sync()
	if sb.allowedFrom(addr) || sb.applies() != n+1 || sb.n.readiness() != nil {
		t.Fatalf("the failed apply must be retried at the next sync: allowed %v, applies %d", sb.allowedFrom(addr), sb.applies()-n)
	}

	// A new policy is a new input even with the same peers.
	if _, err := sb.n.propose([]byte(benchPolicy+"  - name: cache-to-db\n    from: [app]\n    to: [db]\n    ports: [tcp/7000]\n"), ApplyOptions{AppliedBy: "t"}); err != nil {
		t.Fatal(err)
	}
	sb.n.sync()
	if sb.applies() != n+2 {
		t.Fatal("a new policy must be applied")
	}
	// Leaving clears its addresses' conntrack entries, as before.
	left := sb.member(t, 0, k, "cache")
	left.State, left.StateSince = gossip.StateLeft, time.Now()
	sb.gossip.setMembers(left)
	sb.n.sync()
	if last := conntrack[len(conntrack)-1]; !slices.Contains(last, addr) {
		t.Fatalf("conntrack of the departed peer not deleted: %v", conntrack)
	}
}

// A sync reads the WireGuard device once; its statistics feed the rates.
func TestSyncReadsDeviceOnce(t *testing.T) {
	sb := newSyncBench(t, false)
	k := sb.newKey(t)
	sb.gossip.setMembers(sb.member(t, 0, k, "web"))
	sb.mesh.mu.Lock()
	sb.mesh.counters = map[mesh.Key]int64{k: 1000}
	sb.mesh.mu.Unlock()
	sb.n.sync()
	sb.mesh.mu.Lock()
	sb.mesh.counters[k] = 3000
	reads := sb.mesh.reads
	sb.mesh.mu.Unlock()
	sb.skew = 2 * time.Second
	sb.n.sync()
	sb.mesh.mu.Lock()
	reads = sb.mesh.reads - reads
	sb.mesh.mu.Unlock()
	if reads != 1 {
		t.Fatalf("%d device reads in one sync, want 1", reads)
	}
	sb.n.mu.Lock()
	rx := sb.n.rates.rx[k]
	sb.n.mu.Unlock()
	if rx < 500 || rx > 1500 { // 2000 bytes over about 2 s
		t.Fatalf("receive rate %v B/s from the reconcile's statistics, want about 1000", rx)
	}
}

// keepaliveDue is when the first waiting peer gets its keepalive: the
// sync loop wakes then instead of polling.
func TestKeepaliveDue(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	lo, hi := a.pub, b.pub
	if bytes.Compare(lo[:], hi[:]) > 0 {
		lo, hi = hi, lo
	}
	tr := newTracker()
	tr.keepalives(lo, []mesh.Peer{{PublicKey: hi}}, t0)
	if !tr.keepaliveDue.Equal(t0.Add(initiatorDelay)) {
		t.Fatalf("initiator due %v, want %v", tr.keepaliveDue, t0.Add(initiatorDelay))
	}
	tr2 := newTracker()
	tr2.keepalives(hi, []mesh.Peer{{PublicKey: lo}}, t0)
	tr2.keepalives(hi, []mesh.Peer{{PublicKey: lo}}, t0.Add(initiatorDelay))
	if !tr2.keepaliveDue.Equal(t0.Add(responderDelay)) {
		t.Fatalf("responder due %v, want %v", tr2.keepaliveDue, t0.Add(responderDelay))
	}
	tr2.keepalives(hi, []mesh.Peer{{PublicKey: lo}}, t0.Add(responderDelay))
	if !tr2.keepaliveDue.IsZero() {
		t.Fatal("nothing waits once the keepalive is given")
	}
}

// A burst of gossip changes is folded into a few syncs, and the last
// change still takes effect within gossipSyncGap (plus the sync itself).
func TestGossipBurstCoalesced(t *testing.T) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) }) // after the rig stopped (cleanups run last first)
	r := newRig(t, t.TempDir(), "")
	go func() { // each sync that admits peers deletes their conntrack entries
		for {
			select {
			case <-r.conntrak:
			case <-done:
				return
			}
		}
	}()
	waitFor(t, "the first sync", func() bool {
		r.mesh.mu.Lock()
		defer r.mesh.mu.Unlock()
		return r.mesh.reads > 0
	})
	nodes := make([]testNode, 40)
	var members []gossip.Member
	for i := range nodes {
		nodes[i] = newTestNode(t)
	}
	r.mesh.mu.Lock()
	before := r.mesh.reads
	r.mesh.mu.Unlock()
	start := time.Now()
	for i := range nodes {
		members = append(members, nodes[i].member("n", gossip.StateAlive, t0))
		r.gossip.setMembers(members...)
		time.Sleep(5 * time.Millisecond) // changes arriving over about 200 ms
	}
	waitFor(t, "every member configured", func() bool { return r.mesh.peerCount() == len(nodes) })
	took := time.Since(start)
	r.mesh.mu.Lock()
	syncs := r.mesh.reads - before
	r.mesh.mu.Unlock()
	// Uncoalesced, each of the 40 changes would cost a sync; coalesced at
	// most one per gossipSyncGap (plus the 1 s tick).
	if limit := int(took/gossipSyncGap) + 3; syncs > limit {
		t.Fatalf("%d syncs for %d changes in %v, want at most %d", syncs, len(nodes), took, limit)
	}
}
