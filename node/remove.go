package node

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/segmesh/segmesh/api"
)

// docKindRemove carries an operator's removal of a departed node.
const docKindRemove = "remove"

// removal is the gossip document of `segmesh node remove`.
type removal struct {
	Node string    `json:"node"` // memberlist name (public key)
	By   string    `json:"by"`
	Time time.Time `json:"time"`
}

// RemoveNode is an operator's force-leave: a dead or departed node (by name,
// key or overlay address) is dropped at once here and on every node, and
// pruned from the peer caches, instead of waiting for dead_peer_grace. A
// live node is refused: stop it first (it would rejoin anyway).
func (n *Node) RemoveNode(q, by string) (*api.RemoveResult, error) {
	n.mu.Lock()
	var found *peerView
	for i := range n.view.peers {
		p := &n.view.peers[i]
		if p.name == q || p.rec.Name == q || p.rec.Address4.String() == q || p.rec.Address6.String() == q {
			if found != nil && found.name != p.name {
				n.mu.Unlock()
				return nil, fmt.Errorf("%q matches several nodes: give the public key", q)
			}
			found = p
		}
	}
	n.mu.Unlock()
	if found == nil {
		return nil, fmt.Errorf("no node %q in the membership", q)
	}
	if found.state == api.StateUp || found.state == api.StateSuspect {
		return nil, fmt.Errorf("%s (%s) is %s: stop it first; only dead or departed nodes can be removed", found.rec.Name, found.name, found.state)
	}
	r := removal{Node: found.name, By: by, Time: n.deps.Now().UTC()}
	n.applyRemoval(r)
	if b, err := json.Marshal(r); err == nil {
		if err := n.gossip.Publish(docKindRemove, b); err != nil {
			n.log.Warn("removal publish failed", "err", err)
		}
	}
	n.syncAndWait()
	return &api.RemoveResult{Name: found.rec.Name, PublicKey: found.name}, nil
}

// applyRemoval forgets a dead or departed node (memberlist refuses to forget
// a live one, so a stale or forged removal cannot cut a live node). It
// reports whether this removal was new here.
func (n *Node) applyRemoval(r removal) bool {
	n.mu.Lock()
	key := r.Node + "@" + r.Time.String()
	if n.removals[key] {
		n.mu.Unlock()
		return false
	}
	n.removals[key] = true
	n.track.forget(r.Node)
	n.mu.Unlock()
	n.gossip.Forget(r.Node)
	n.log.Warn("node removed by an operator", "node", r.Node, "by", r.By)
	n.kick()
	return true
}

// mergeRemoval takes a removal from the mesh.
func (n *Node) mergeRemoval(data []byte) bool {
	var r removal
	if err := json.Unmarshal(data, &r); err != nil || r.Node == "" {
		n.log.Warn("removal document rejected", "err", err)
		return false
	}
	return n.applyRemoval(r)
}
