package node

import (
	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
)

// PolicyMatrix returns the active policy's segment × segment matrix.
func (n *Node) PolicyMatrix() api.PolicyView {
	n.mu.Lock()
	defer n.mu.Unlock()
	pv := api.PolicyView{Mode: string(acl.ModeEnforce), Segments: []string{}, Matrix: []api.MatrixCell{}}
	if n.policy.doc == nil {
		return pv
	}
	pv.Version, pv.Hash, pv.Mode = n.policy.doc.Version, n.policy.doc.Hash, string(n.policy.pol.Mode)
	for _, s := range n.policy.pol.Segments {
		pv.Segments = append(pv.Segments, s.Name)
	}
	for _, c := range n.policy.pol.Matrix() {
		pv.Matrix = append(pv.Matrix, api.MatrixCell{From: c.From, To: c.To, Ports: c.PortStrings(), Rules: nonNil(c.Rules)})
	}
	return pv
}
