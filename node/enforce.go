package node

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/acl/nft"
	"github.com/segmesh/segmesh/mesh"
)

// selfMember is this node as the compiler sees it. Callers hold mu.
func (n *Node) selfMember() acl.Member {
	ws, _ := n.localWorkloads()
	return acl.Member{Key: n.pub.String(), Name: n.cfg.Name, Addr4: n.claim.Address,
		Addr6: mesh.Address6(n.cfg.Network6, n.pub), Tags: n.cfg.Tags, Workloads: ws}
}

// admitted returns the peers that may match segments: verified records that
// are WireGuard peers (alive, suspect, or dead within grace). Untrusted and
// departed nodes match nothing, not even "*".
func (v view) admitted() []acl.Member {
	count := 0
	for i := range v.peers {
		if v.peers[i].configured {
			count++
		}
	}
	out := make([]acl.Member, 0, count)
	for i := range v.peers {
		p := &v.peers[i]
		if !p.configured {
			continue
		}
		m := acl.Member{Key: p.name, Name: p.rec.Name, Addr6: p.rec.Address6, Tags: p.rec.Tags}
		m.Workloads, _ = checkWorkloads(p.rec, p.cert)
		for _, a := range p.allowed {
			if a.Addr().Is4() {
				m.Addr4 = a.Addr() // only when it holds its IPv4 (clash rule)
			}
		}
		out = append(out, m)
	}
	return out
}

// desired compiles the active policy for this node. Callers hold mu or own n.
func (n *Node) desired(peers []acl.Member) acl.Enforced {
	return n.identities().Compile(n.policy.pol, n.selfMember(), peers)
}

// identities returns the node's identity allocator (numbers stay while
// their segment set exists). Callers hold mu or own n.
func (n *Node) identities() *acl.IdentityAllocator {
	if n.ids == nil {
		n.ids = acl.NewIdentityAllocator()
	}
	return n.ids
}

// compileInputs is everything the enforced sets and the peer index are
// computed from: the active policy, this node and the admitted peers.
type compileInputs struct {
	pol   *acl.Policy // replaced, never changed in place, on each accepted policy
	self  acl.Member
	peers []acl.Member
	valid bool
}

// compileInputs captures the inputs of a compilation for the admitted
// peers under the active policy. Callers hold mu.
func (n *Node) compileInputs(admitted []acl.Member) compileInputs {
	return compileInputs{pol: n.policy.pol, self: n.selfMember(), peers: admitted, valid: true}
}

// same reports whether a and b compile to the same sets and index.
func (a compileInputs) same(b compileInputs) bool {
	return a.valid && b.valid && a.pol == b.pol && sameMember(a.self, b.self) &&
		slices.EqualFunc(a.peers, b.peers, sameMember)
}

func sameMember(a, b acl.Member) bool {
	return a.Key == b.Key && a.Name == b.Name && a.Addr4 == b.Addr4 && a.Addr6 == b.Addr6 && maps.Equal(a.Tags, b.Tags) &&
		slices.EqualFunc(a.Workloads, b.Workloads, func(x, y acl.Workload) bool { return x.Name == y.Name && maps.Equal(x.Tags, y.Tags) })
}

// enforce writes the compiled sets and deletes the conntrack entries of
// peer addresses that left or arrived (security invariant 3), so a later
// holder of an address cannot ride entries of its previous holder. When
// the inputs are those of the last successful apply, the sets and the peer
// addresses are already in force and nothing is done; a failed apply is
// retried by the next call.
// The sync loop owns n.applied and n.peerIPs.
func (n *Node) enforce(admitted []acl.Member) error {
	n.mu.Lock()
	in := n.compileInputs(admitted)
	eg := egressInputs{in: in, cgroups: n.cgroupStatuses()}
	doIngress, doEgress := !in.same(n.applied), !eg.same(n.appliedEgress)
	var d acl.Enforced
	var out nft.Egress
	if doIngress {
		d = n.identities().Compile(in.pol, in.self, in.peers)
	}
	if doEgress {
		out = n.desiredEgress(eg)
	}
	n.mu.Unlock()
	if doIngress {
		if err := n.enforceIngress(in, d); err != nil {
			return err
		}
	}
	if doEgress {
		if err := n.fw.ApplyEgress(out); err != nil {
			return fmt.Errorf("egress: %w", err)
		}
		n.appliedEgress = eg
	}
	return n.enforceQuarantine(admitted)
}

// enforceIngress applies d, compiled from in, and cleans up conntrack
// (see enforce).
func (n *Node) enforceIngress(in compileInputs, d acl.Enforced) error {
	if err := n.fw.Apply(d); err != nil {
		return err
	}
	n.applied = in
	now := make(map[netip.Addr]string, 2*len(in.peers))
	for _, m := range in.peers {
		for _, a := range []netip.Addr{m.Addr4, m.Addr6} {
			if a.IsValid() {
				now[a] = m.Key
			}
		}
	}
	// Addresses that left and addresses that arrive both lose their
	// conntrack entries: this node's own retransmissions to a removed peer
	// re-create entries after its removal, and a new holder of the address
	// must not ride them. Runs before WireGuard learns about new peers.
	// A peer arriving with the address it held when this run started (the
	// persisted address book: a restart) keeps its entries: deleting them
	// would have this node pick its own side of a connection up as the
	// original direction, and its egress check would then reset it.
	var changed []netip.Addr
	for a, key := range n.peerIPs {
		if now[a] != key {
			changed = append(changed, a)
		}
	}
	for a, key := range now {
		if _, ok := n.peerIPs[a]; ok {
			continue // the same holder, or counted above
		}
		if n.bootHolders[a] == key {
			delete(n.bootHolders, a)
			continue
		}
		changed = append(changed, a)
	}
	n.peerIPs = now
	if len(changed) > 0 {
		cnt, err := n.deps.DeleteConntrack(changed)
		if err != nil {
			n.log.Warn("conntrack cleanup of changed peer addresses failed", "addrs", changed, "err", err)
		} else if cnt > 0 {
			n.log.Info("conntrack entries of removed or new peer addresses deleted", "count", cnt, "addrs", changed)
		}
	}
	return nil
}
