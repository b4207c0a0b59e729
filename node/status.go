package node

import (
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/mesh"
)

// Status returns the contract status of this node.
func (n *Node) Status() api.Status {
	wg := n.stats()
	n.mu.Lock()
	defer n.mu.Unlock()
	s := api.Status{
		Self: api.Self{
			Name: n.cfg.Name, PublicKey: n.pub.String(), Address: n.claim.Address.String(),
			Address6: mesh.Address6(n.cfg.Network6, n.pub).String(), Endpoint: n.endpoint.String(),
			Tags: nonNilTags(n.cfg.Tags), Segments: n.segmentsOf(n.cfg.Tags), Workloads: n.selfWorkloads(),
		},
		Peers:     []api.Peer{},
		Policy:    api.Policy{Version: 0, Hash: "", Mode: "enforce"},
		Trust:     n.cfg.TrustMode(),
		Interface: n.mesh.Name(),
		Backend:   n.mesh.Backend(),
		Members:   n.gossip.NumMembers(),
	}
	if n.trust != nil {
		s.Self.CertNotAfter, s.Self.CertExpiresSoon = certExpiry(n.trust.cert, time.Now())
	}
	s.Quarantined = n.quarantinedViews()
	if d := n.policy.doc; d != nil {
		s.Policy = api.Policy{Version: d.Version, Hash: d.Hash, Mode: string(n.policy.pol.Mode)}
	}
	for _, p := range n.view.peers {
		ap := api.Peer{
			Name: p.rec.Name, PublicKey: p.name, Tags: nonNilTags(p.rec.Tags), Segments: []string{},
			State: p.state, Reason: p.reason,
		}
		ap.Workloads = n.peerWorkloads(p.rec, p.cert, p.configured)
		if p.configured {
			ap.Segments = n.segmentsOf(p.rec.Tags)
			if st := n.peerState(&p); st == api.StateQuarantined {
				e, _ := n.quar.Lookup(p.name)
				ap.State, ap.Reason = st, quarantineReason(e)
			}
		}
		ap.CertNotAfter, ap.CertExpiresSoon = certExpiry(p.cert, time.Now())
		if p.rejected == nil {
			ap.Address, ap.Address6, ap.Endpoint = p.rec.Address4.String(), p.rec.Address6.String(), p.endpoint.String()
		}
		if st, ok := wg[p.key]; ok && p.configured {
			ap.RxBytes, ap.TxBytes = st.RxBytes, st.TxBytes
			ap.RxRate, ap.TxRate = n.rates.rx[p.key], n.rates.tx[p.key]
			if st.Endpoint.IsValid() {
				ap.Endpoint = st.Endpoint.String() // roaming: what WireGuard really uses
			}
			if !st.LastHandshake.IsZero() {
				t := st.LastHandshake.UTC().Format(time.RFC3339)
				ap.LastHandshake = &t
			}
		}
		s.Peers = append(s.Peers, ap)
	}
	return s
}

func nonNilTags(t map[string]string) map[string]string {
	if t == nil {
		return map[string]string{}
	}
	return t
}

// segmentsOf lists the active policy's segments that tags match. Callers hold mu.
// memberSegments is an admitted peer's identity at this node: the union
// of its node's and its accepted workloads' segments. Callers hold mu.
func (n *Node) memberSegments(m acl.Member) []string {
	if n.policy.pol == nil {
		return []string{}
	}
	return nonNil(n.policy.pol.SegmentsOfMember(m))
}

func (n *Node) segmentsOf(tags map[string]string) []string {
	if n.policy.pol == nil {
		return []string{}
	}
	return nonNil(n.policy.pol.SegmentsOf(tags))
}
