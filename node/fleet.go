package node

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/peerapi"
)

// errPeerAPIOff is the answer to a fleet request on a node whose peer API
// is off: it does not know the port to ask.
var errPeerAPIOff = fmt.Errorf("--fleet needs the peer API: peer_api_port is 0 on this node")

// fleetTargets splits the peers into those to ask (up, with an overlay
// address) and those that cannot answer, with why.
func fleetTargets(peers []api.Peer) ([]peerapi.Target, []api.Missing) {
	var ask []peerapi.Target
	missing := []api.Missing{}
	for _, p := range peers {
		if p.State != api.StateUp {
			why := "peer is " + p.State
			if p.Reason != "" {
				why += ": " + p.Reason
			}
			missing = append(missing, api.Missing{Node: p.Name, Reason: why})
			continue
		}
		a, err := netip.ParseAddr(p.Address)
		if err != nil || !a.IsValid() {
			a, err = netip.ParseAddr(p.Address6)
		}
		if err != nil {
			missing = append(missing, api.Missing{Node: p.Name, Reason: "no overlay address"})
			continue
		}
		ask = append(ask, peerapi.Target{Name: p.Name, Addr: a})
	}
	return ask, missing
}

// absentHolders are the nodes this node remembers holding an address
// (within address_retention) that are not among peers now: stopped or cut
// off, they are part of the fleet and cannot answer.
func (n *Node) absentHolders(peers []api.Peer) []api.Missing {
	present := map[string]bool{}
	for _, p := range peers {
		present[p.PublicKey] = true
	}
	now := n.deps.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []api.Missing
	for _, h := range n.book.local {
		if h.key == n.pub || present[h.key.String()] || !h.live(now, n.book.retention) {
			continue
		}
		present[h.key.String()] = true
		out = append(out, api.Missing{Node: nameOr(h.name, h.key.String()),
			Reason: fmt.Sprintf("not in the mesh now (last seen %v ago)", now.Sub(h.lastSeen).Round(time.Second))})
	}
	return out
}

// fleetFetch asks every up peer's peer API for path in parallel and
// returns the answers and every peer that did not answer, with why.
func fleetFetch[T any](ctx context.Context, n *Node, path string) ([]peerapi.Answer[T], []api.Missing, error) {
	n.mu.Lock()
	p := n.peerAPI
	n.mu.Unlock()
	if p == nil {
		return nil, nil, errPeerAPIOff
	}
	peers := n.Status().Peers
	ask, missing := fleetTargets(peers)
	missing = append(missing, n.absentHolders(peers)...)
	ans, more := peerapi.Fetch[T](ctx, p.client, ask, path)
	missing = append(missing, more...)
	slices.SortFunc(missing, func(a, b api.Missing) int {
		if a.Node < b.Node {
			return -1
		}
		if a.Node > b.Node {
			return 1
		}
		return 0
	})
	return ans, missing, nil
}

// FleetFlows is every node's flows: this node's and each up peer's, each
// flow with the observing node's name.
func (n *Node) FleetFlows(ctx context.Context) (*api.FleetFlows, error) {
	ans, missing, err := fleetFetch[[]api.Flow](ctx, n, "/v1/flows")
	if err != nil {
		return nil, err
	}
	out := &api.FleetFlows{Flows: peerSource{n}.Flows(), Missing: missing}
	for _, a := range ans {
		for _, f := range a.Value {
			f.Node = a.Node // the answer names itself; the asker's name for it wins
			out.Flows = append(out.Flows, f)
		}
	}
	slices.SortStableFunc(out.Flows, func(x, y api.Flow) int { return y.LastSeen.Compare(x.LastSeen) })
	return out, nil
}

// fleetObserved is every node's observations (this node's first), the
// names of the nodes in, and the missing ones.
func (n *Node) fleetObserved(ctx context.Context) ([]api.Observation, []string, []api.Missing, error) {
	own := n.Observed()
	ans, missing, err := fleetFetch[api.Observed](ctx, n, "/v1/observed")
	if err != nil {
		return nil, nil, nil, err
	}
	obs, nodes := own.Observations, []string{own.Node}
	for _, a := range ans {
		obs = append(obs, a.Value.Observations...)
		nodes = append(nodes, a.Node)
	}
	return obs, nodes, missing, nil
}
