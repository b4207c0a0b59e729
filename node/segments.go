package node

import (
	"slices"

	"github.com/segmesh/segmesh/api"
)

// Segments lists the active policy's segments with their members: this node
// and every peer whose (verified) tags match, with its state.
func (n *Node) Segments() []api.SegmentView {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := []api.SegmentView{}
	if n.policy.pol == nil {
		return out
	}
	for _, seg := range n.policy.pol.Segments {
		sv := api.SegmentView{Name: seg.Name, Selector: seg.SelectorMap(), Members: []api.SegmentMember{}}
		if slices.Contains(n.policy.pol.SegmentsOf(n.cfg.Tags), seg.Name) {
			sv.Members = append(sv.Members, api.SegmentMember{Name: n.cfg.Name, PublicKey: n.pub.String(),
				Address: n.claim.Address.String(), State: api.StateUp, Self: true})
		}
		for _, p := range n.view.peers {
			if p.rejected != nil || !slices.Contains(n.policy.pol.SegmentsOf(p.rec.Tags), seg.Name) {
				continue
			}
			sv.Members = append(sv.Members, api.SegmentMember{Name: p.rec.Name, PublicKey: p.name,
				Address: p.rec.Address4.String(), State: p.state})
		}
		out = append(out, sv)
	}
	return out
}
