package node

import (
	"maps"
	"net/netip"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/flows"
	"github.com/segmesh/segmesh/mesh"
	"github.com/segmesh/segmesh/peerapi"
)

// peerAPI is the peer API server on the overlay addresses and the client
// fleet requests use, with the requests served by outcome
// (segmesh_peer_api_requests_total; with Node.mu).
type peerAPI struct {
	srv      PeerAPIServer
	client   *peerapi.Client
	port     int
	requests map[string]uint64
}

// startPeerAPI listens on this node's overlay addresses, bound to the mesh
// interface (peer_api_port; 0: off).
func (n *Node) startPeerAPI() error {
	if n.cfg.PeerAPIPort == 0 || n.deps.ServePeerAPI == nil {
		return nil
	}
	p := &peerAPI{port: n.cfg.PeerAPIPort, client: peerapi.NewClient(n.cfg.PeerAPIPort, peerapi.Timeout), requests: map[string]uint64{}}
	p.srv = n.deps.ServePeerAPI(peerapi.Config{
		Interface: n.mesh.Name(), Port: n.cfg.PeerAPIPort, Admitted: n.admittedSource,
		Count: n.countPeerAPI, Log: n.log.With("sub", "peerapi"),
	}, peerSource{n})
	n.mu.Lock()
	n.peerAPI = p
	err := n.peerAPIAddrs()
	n.mu.Unlock()
	if err != nil {
		_ = p.srv.Close()
		n.mu.Lock()
		n.peerAPI = nil
		n.mu.Unlock()
		return err
	}
	return nil
}

// peerAPIAddrs (re)binds the peer API to this node's overlay addresses.
// Callers hold mu.
func (n *Node) peerAPIAddrs() error {
	if n.peerAPI == nil {
		return nil
	}
	err := n.peerAPI.srv.SetAddrs([]netip.Addr{n.claim.Address, mesh.Address6(n.cfg.Network6, n.pub)})
	if err != nil {
		n.log.Error("peer API", "err", err)
	}
	return err
}

func (n *Node) stopPeerAPI() error {
	n.mu.Lock()
	p := n.peerAPI
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	p.client.CloseIdle()
	return p.srv.Close()
}

// admittedSource reports whether a is an admitted (CA mode: trusted)
// peer's overlay address.
func (n *Node) admittedSource(a netip.Addr) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.byAddr[a]
	return ok
}

func (n *Node) countPeerAPI(code string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.peerAPI != nil {
		n.peerAPI.requests[code]++
	}
}

// peerAPIRequests returns the requests served by outcome (monotonic).
func (n *Node) peerAPIRequests() map[string]uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.peerAPI == nil {
		return nil
	}
	return maps.Clone(n.peerAPI.requests)
}

// peerSource is what the peer API serves of n.
type peerSource struct{ n *Node }

func (s peerSource) Flows() []api.Flow {
	name := s.n.Status().Self.Name
	fl := s.n.Flows()
	for i := range fl {
		fl[i].Node = name
	}
	return fl
}

func (s peerSource) Observed() api.Observed { return s.n.Observed() }

func (s peerSource) Info() api.PeerInfo {
	st := s.n.Status()
	wl := make([]string, 0, len(st.Self.Workloads))
	for _, w := range st.Self.Workloads {
		wl = append(wl, w.Name)
	}
	return api.PeerInfo{Name: st.Self.Name, PublicKey: st.Self.PublicKey, Segments: st.Self.Segments, Workloads: wl,
		PolicyVersion: st.Policy.Version, PolicyHash: st.Policy.Hash, Mode: st.Policy.Mode}
}

// Observed is this node's observations in the policy's terms (GET
// /v1/observed): every flow aggregate, in and out, and the live inbound
// connections conntrack holds.
func (n *Node) Observed() api.Observed {
	fl := n.Flows()
	live, err := n.liveInbound()
	if err != nil {
		n.log.Warn("observed: live connections left out", "err", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	tags := n.tagsByKey()
	out := api.Observed{Node: n.cfg.Name, Observations: make([]api.Observation, 0, len(fl)+len(live))}
	for _, f := range fl {
		o := api.Observation{SrcSegments: f.SrcSegments, DstSegments: f.DstSegments, Proto: f.Proto, Port: f.Port,
			Count: f.Connections, Verdict: f.Verdict, Direction: f.Direction}
		if f.Direction == api.DirectionOut {
			o.SrcName, o.SrcTags = n.cfg.Name, n.identityTags(f.Workload)
			o.DstName, o.DstTags = nameOr(f.Peer, f.DstAddr), tags[f.DstKey]
		} else {
			o.SrcName, o.SrcTags = nameOr(f.SrcName, f.SrcAddr), tags[f.SrcKey]
			o.DstName, o.DstTags = n.cfg.Name, maps.Clone(n.cfg.Tags)
		}
		if o.Count == 0 {
			o.Count = f.Count
		}
		out.Observations = append(out.Observations, o)
	}
	for _, p := range live {
		peer, ok := n.byAddr[p.Src]
		if !ok {
			continue // not an admitted peer: nothing a policy change could cut
		}
		out.Observations = append(out.Observations, api.Observation{
			SrcName: peer.Name, SrcSegments: peer.Segments, SrcTags: tags[peer.Key],
			DstName: n.cfg.Name, DstSegments: n.segmentsOf(n.cfg.Tags), DstTags: maps.Clone(n.cfg.Tags),
			Proto: flows.ProtoName(p.Proto), Port: p.Port, Count: 1, Verdict: api.VerdictLive, Direction: api.DirectionIn,
		})
	}
	return out
}

// identityTags are the tags of a local identity: the node's, with a
// workload's own added. Callers hold mu.
func (n *Node) identityTags(workload string) map[string]string {
	for _, w := range n.cfg.Workloads {
		if w.Name == workload {
			return acl.WorkloadTags(n.cfg.Tags, acl.Workload{Name: w.Name, Tags: w.Tags})
		}
	}
	return maps.Clone(n.cfg.Tags)
}

// liveInbound lists the inbound connections to this node's overlay
// addresses that conntrack holds.
func (n *Node) liveInbound() ([]flows.Packet, error) {
	n.mu.Lock()
	local := []netip.Addr{n.claim.Address, mesh.Address6(n.cfg.Network6, n.pub)}
	n.mu.Unlock()
	return flows.InboundFlows(local)
}

// toACL turns observations into the compiler's terms.
func toACL(obs []api.Observation) []acl.Observed {
	out := make([]acl.Observed, 0, len(obs))
	for _, o := range obs {
		out = append(out, acl.Observed{SrcSegments: o.SrcSegments, DstSegments: o.DstSegments, SrcTags: o.SrcTags, DstTags: o.DstTags,
			SrcName: o.SrcName, DstName: o.DstName, Proto: o.Proto, Port: o.Port, Count: o.Count, Audited: o.Verdict == api.VerdictAudited})
	}
	return out
}
