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
// peers that are no longer WireGuard peers (security invariant 3), so a
// later holder of their address cannot ride them.
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
	var gone []netip.Addr
	for a := range n.peerIPs {
		if !now[a] {
			gone = append(gone, a)
		}
	}
	n.peerIPs = now
	if len(gone) > 0 {
		cnt, err := n.deps.DeleteConntrack(gone)
		if err != nil {
			n.log.Warn("conntrack cleanup of removed peers failed", "addrs", gone, "err", err)
		} else if cnt > 0 {
			n.log.Info("conntrack entries of removed peers deleted", "count", cnt, "addrs", gone)
		}
	}
	return nil
}
