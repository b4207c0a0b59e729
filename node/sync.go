package node

import (
	"net/netip"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// sync evaluates membership and brings WireGuard in step with it. It runs on
// every gossip change and once a second (grace expiry, suspect states), and
// when the next keepalive is due. Records are verified once per distinct
// content (verifyCache), the sets are compiled only when their inputs
// changed, and the device is read once.
func (n *Node) sync() {
	members := n.gossip.Members() // never called from a gossip callback
	now := n.deps.Now()

	n.mu.Lock()
	n.records.begin(trustGen{self: n.pub, net4: n.cfg.Network, net6: n.cfg.Network6, trust: n.trust, revs: n.trust.revsVersion()})
	n.track.observeDecoded(members, now, func(m gossip.Member) (gossip.Record, bool) {
		e := n.records.lookup(m, now)
		return e.vr.rec, e.decoded
	})
	v := computeView(viewInput{
		self: n.pub, selfAddr4: n.claim.Address, selfEffective: n.selfEffective(),
		net4: n.cfg.Network, net6: n.cfg.Network6, members: members, now: now,
		grace: n.cfg.DeadPeerGrace, effective: n.track.effective, trust: n.trust, verified: &n.records,
		book: &n.book, hintsCount: n.hintsCount(now),
	})
	n.records.end()
	n.remember(v, now)
	for _, name := range v.forget {
		n.track.forget(name)
	}
	for i := range v.peers {
		p := &v.peers[i]
		if p.rejected != nil && n.track.countRejection(p.name, p.rejected.reason) {
			n.log.Warn("record rejected", "node", p.name, "name", p.rec.Name, "reason", p.rejected.reason, "detail", p.rejected.detail)
		}
	}
	n.view = v
	admitted := v.admitted()
	n.indexPeers(admitted)
	renumber := v.selfLoses
	n.mu.Unlock()

	for _, name := range v.forget {
		n.gossip.Forget(name)
	}
	if renumber {
		n.renumber(v.held, now)
	}
	// Sets first: a peer gains access in the same step as its WireGuard
	// config, and loses it before its peer entry goes.
	if err := n.enforce(admitted); err != nil {
		n.log.Error("nftables apply failed; the previous sets stay in force, will retry", "err", err)
		n.mu.Lock()
		n.ready = false
		n.mu.Unlock()
		return
	}
	peers := v.wgPeers()
	n.mu.Lock()
	n.track.keepalives(n.pub, peers, now)
	due := n.track.keepaliveDue
	n.mu.Unlock()
	n.wakeAt(due, now) // the 1 s tick is too coarse for the handshake start
	n.tuneMTU(v)       // lower before a peer on a smaller path is added
	res, st, err := n.mesh.ReconcileStats(peers)
	if err != nil {
		n.log.Error("wireguard reconcile failed; will retry", "err", err)
		return
	}
	if res.Added+res.Removed+res.Updated > 0 {
		n.log.Info("wireguard peers reconciled", "added", res.Added, "removed", res.Removed, "updated", res.Updated)
	}
	n.mu.Lock()
	n.rates.observe(st, n.deps.Now())
	n.ready = true
	// Only once the sets in force were compiled from the active policy: a
	// policy accepted while this sync was under way waits for the next one.
	if !n.policyPending.IsZero() && n.applied.pol == n.policy.pol {
		n.recorder.PolicyApplied(n.deps.Now().Sub(n.policyPending))
		n.policyPending = time.Time{}
	}
	n.mu.Unlock()
	n.changed.notify()
}

// wakeAt has the loop sync again at due (zero: nothing to wait for), as
// measured from now. Only the sync loop calls it.
func (n *Node) wakeAt(due, now time.Time) {
	if due.IsZero() {
		if n.wake != nil {
			n.wake.Stop()
		}
		return
	}
	d := due.Sub(now)
	if n.wake == nil {
		n.wake = time.AfterFunc(d, n.kick)
		return
	}
	n.wake.Reset(d)
}

// stopWake stops the keepalive timer when the loop ends.
func (n *Node) stopWake() {
	if n.wake != nil {
		n.wake.Stop()
	}
}

// selfEffective is our claim time in the clash rule. A claim carried over
// from an earlier run keeps its time when this node's memory still holds it
// (it remembered itself within address_retention: the fleet does too);
// otherwise it counts from this run's start, so nobody can back-date a
// claim nobody remembers. Callers hold mu.
func (n *Node) selfEffective() time.Time {
	if n.fixedAddress().IsValid() {
		return time.Time{} // a certificate-fixed address is authoritative
	}
	if n.claim.Claimed.Before(n.runStart) && !n.selfRemembered {
		return n.runStart
	}
	return n.claim.Claimed
}

// hintWindow is how long after claiming an address (or first meeting the
// mesh, whichever is later) other nodes' memory may still move this node
// off it: long enough for the join's push/pull to bring their hints, short
// enough that forged hints cannot renumber an established node.
const hintWindow = 2 * time.Minute

// hintsCount reports whether other nodes' memory may move this node off its
// address now. A node that came back to a claim it remembers is never moved
// by hints. Callers hold mu.
func (n *Node) hintsCount(now time.Time) bool {
	if n.selfRemembered || n.fixedAddress().IsValid() {
		return false
	}
	since := n.claim.Claimed
	if n.track.joinedAt.After(since) {
		since = n.track.joinedAt
	}
	return n.track.joinedAt.IsZero() || now.Sub(since) < hintWindow
}

// remember records this sync's address holders in the address memory and
// persists it. Callers hold mu.
func (n *Node) remember(v view, now time.Time) {
	if !v.selfLoses {
		n.book.observe(n.claim.Address, n.pub, n.cfg.Name, n.selfEffective(), now)
	}
	for i := range v.peers {
		p := &v.peers[i]
		if p.holds4 && (p.state == api.StateUp || p.state == api.StateSuspect) {
			n.book.observe(p.rec.Address4, p.key, p.rec.Name, p.claimed, now)
		}
	}
	for _, h := range n.book.expire(now) {
		n.log.Info("address memory: holder absent longer than address_retention; its address is free", "name", h.name, "public_key", h.key, "last_seen", h.lastSeen)
	}
	if err := n.book.save(n.cfg.StateDir, now); err != nil {
		n.log.Error("address memory not persisted; will retry", "err", err)
	}
}

// renumber moves this node to its next free IPv4 candidate after losing a
// clash, persists the claim and re-announces.
func (n *Node) renumber(held map[netip.Addr]bool, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.claim.Address
	if n.fixedAddress().IsValid() {
		n.log.Error("address clash on a certificate-fixed address: two certificates fix the same IPv4; keeping it", "address", old)
		return
	}
	for a := range n.book.heldByOthers(n.pub, now) {
		held[a] = true // newcomers choose around remembered addresses
	}
	addr, ok := nextFree(n.cfg.Network, n.pub, held)
	if !ok {
		n.log.Error("address clash: every IPv4 candidate of this key is taken; keeping IPv6 only", "address", old)
		return
	}
	next := claim{Network: n.cfg.Network, Address: addr, Claimed: now}
	if err := next.save(n.cfg.StateDir); err != nil {
		n.log.Error("address clash: cannot persist the new claim; keeping the old address", "err", err)
		return
	}
	if err := n.mesh.SetAddress4(netip.PrefixFrom(addr, n.cfg.Network.Bits())); err != nil {
		n.log.Error("address clash: cannot set the new address", "address", addr, "err", err)
		return
	}
	n.claim = next
	n.selfRemembered = false
	n.peerAPIAddrs()
	if err := n.gossip.UpdateLocal(n.record()); err != nil {
		n.log.Error("re-announce after renumbering failed", "err", err)
	}
	n.log.Warn("address clash lost to an earlier claim: renumbered", "old", old, "new", addr)
}

// Peers' WireGuard view for status.
func (n *Node) stats() map[mesh.Key]mesh.PeerStats {
	out := map[mesh.Key]mesh.PeerStats{}
	st, err := n.mesh.Stats()
	if err != nil {
		n.log.Warn("wireguard stats", "err", err)
		return out
	}
	for _, s := range st {
		out[s.PublicKey] = s
	}
	return out
}
