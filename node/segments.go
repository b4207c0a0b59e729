package node

import (
	"slices"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
)

// Segments lists the active policy's segments with their members: this node
// and every peer whose (verified) tags match, with its state, and the
// accepted workloads in a segment their node is not in (as NODE/WORKLOAD).
func (n *Node) Segments() []api.SegmentView {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := []api.SegmentView{}
	if n.policy.pol == nil {
		return out
	}
	for _, seg := range n.policy.pol.Segments {
		sv := api.SegmentView{Name: seg.Name, Selector: seg.SelectorMap(), Members: []api.SegmentMember{}}
		self := api.SegmentMember{Name: n.cfg.Name, PublicKey: n.pub.String(),
			Address: n.claim.Address.String(), State: api.StateUp, Self: true}
		if n.isQuarantined(self.PublicKey) {
			self.State = api.StateQuarantined
		}
		ws, _ := n.localWorkloads()
		sv.Members = n.appendMembers(sv.Members, seg.Name, self, n.cfg.Tags, ws)
		for _, p := range n.view.peers {
			if p.rejected != nil {
				continue
			}
			ws, _ := checkWorkloads(p.rec, p.cert)
			m := api.SegmentMember{Name: p.rec.Name, PublicKey: p.name, Address: p.rec.Address4.String(), State: n.peerState(&p)}
			sv.Members = n.appendMembers(sv.Members, seg.Name, m, p.rec.Tags, ws)
		}
		out = append(out, sv)
	}
	return out
}

// appendMembers adds m when its node tags are in segment seg, else each of
// its workloads that is (as NODE/WORKLOAD). Callers hold mu.
func (n *Node) appendMembers(out []api.SegmentMember, seg string, m api.SegmentMember, tags map[string]string, ws []acl.Workload) []api.SegmentMember {
	if slices.Contains(n.policy.pol.SegmentsOf(tags), seg) {
		return append(out, m)
	}
	for _, w := range ws {
		if slices.Contains(n.policy.pol.SegmentsOf(acl.WorkloadTags(tags, w)), seg) {
			wm := m
			wm.Name, wm.Workload = m.Name+"/"+w.Name, w.Name
			out = append(out, wm)
		}
	}
	return out
}
