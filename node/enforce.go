package node

import (
	"net/netip"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/mesh"
)

// selfMember is this node as the compiler sees it. Callers hold mu.
func (n *Node) selfMember() acl.Member {
	return acl.Member{Key: n.pub.String(), Name: n.cfg.Name, Addr4: n.claim.Address,
		Addr6: mesh.Address6(n.cfg.Network6, n.pub), Tags: n.cfg.Tags}
}

// admitted returns the peers that may match segments: verified records that
// are WireGuard peers (alive, suspect, or dead within grace). Untrusted and
// departed nodes match nothing, not even "*".
func (v view) admitted() []acl.Member {
	var out []acl.Member
	for _, p := range v.peers {
		if !p.configured {
			continue
		}
		m := acl.Member{Key: p.name, Name: p.rec.Name, Addr6: p.rec.Address6, Tags: p.rec.Tags}
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
func (n *Node) desired(peers []acl.Member) acl.Desired {
	return acl.Compile(n.policy.pol, n.selfMember(), peers)
}

// enforce writes the compiled sets and deletes the conntrack entries of
// peer addresses that left or arrived (security invariant 3), so a later
// holder of an address cannot ride entries of its previous holder.
func (n *Node) enforce(v view) error {
	n.mu.Lock()
	d := n.desired(v.admitted())
	n.mu.Unlock()
	if err := n.fw.Apply(d); err != nil {
		return err
	}
	now := map[netip.Addr]bool{}
	for _, p := range v.wgPeers() {
		for _, a := range p.AllowedIPs {
			now[a.Addr()] = true
		}
	}
	// Addresses that left and addresses that arrive both lose their
	// conntrack entries: this node's own retransmissions to a removed peer
	// re-create entries after its removal, and a new holder of the address
	// must not ride them. Runs before WireGuard learns about new peers.
	var changed []netip.Addr
	for a := range n.peerIPs {
		if !now[a] {
			changed = append(changed, a)
		}
	}
	for a := range now {
		if !n.peerIPs[a] {
			changed = append(changed, a)
		}
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
