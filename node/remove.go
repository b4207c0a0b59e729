package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/mesh"
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
	name, key, found, err := n.resolveNode(q, false)
	if err != nil {
		return nil, err
	}
	if found != nil && (found.state == api.StateUp || found.state == api.StateSuspect) {
		return nil, fmt.Errorf("%s (%s) is %s: stop it first; only dead or departed nodes can be removed", found.rec.Name, found.name, found.state)
	}
	r := removal{Node: key, By: by, Time: n.deps.Now().UTC()}
	res := &api.RemoveResult{Name: name, PublicKey: key}
	n.mu.Lock()
	if k, err := mesh.ParseKey(key); err == nil {
		if a, ok := n.book.byKey[k]; ok {
			res.Address = a.String()
		}
	}
	n.mu.Unlock()
	n.applyRemoval(r)
	if b, err := json.Marshal(r); err == nil {
		if err := n.gossip.PublishUrgent(docKindRemove, b); err != nil {
			n.log.Warn("removal publish failed", "err", err)
		}
	}
	n.syncAndWait()
	if res.Address != "" {
		n.mu.Lock()
		h, held := n.book.holder(netip.MustParseAddr(res.Address), n.deps.Now())
		res.AddressFreed = !held || h.key.String() != key
		n.mu.Unlock()
	}
	return res, nil
}

// resolveNode finds the node q names: a peer's public key, name or overlay
// address, else an address holder this node remembers; with self, this
// node and the quarantine list's nodes too. A name several nodes carry is
// an error listing them. found is the peer's view when q is a peer.
func (n *Node) resolveNode(q string, self bool) (name, key string, found *peerView, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	type cand struct{ name, key, addr string }
	var cands []cand
	add := func(c cand, p *peerView) {
		for _, x := range cands {
			if x.key == c.key {
				return
			}
		}
		cands = append(cands, c)
		if p != nil {
			found = p
		}
	}
	if self && (q == n.cfg.Name || q == n.pub.String() || q == n.claim.Address.String() || q == mesh.Address6(n.cfg.Network6, n.pub).String()) {
		add(cand{n.cfg.Name, n.pub.String(), n.claim.Address.String()}, nil)
	}
	for i := range n.view.peers {
		p := &n.view.peers[i]
		if p.name == q || p.rec.Name == q || p.rec.Address4.String() == q || p.rec.Address6.String() == q {
			add(cand{p.rec.Name, p.name, p.rec.Address4.String()}, p)
		}
	}
	if self && n.quar != nil {
		for _, e := range n.quar.Entries() {
			if e.Name == q || e.Target == q {
				add(cand{e.Name, e.Target, ""}, nil)
			}
		}
	}
	if len(cands) == 0 {
		if _, h, err := n.book.find(q); err == nil {
			add(cand{h.name, h.key.String(), ""}, nil) // gone from gossip, still remembered as an address holder
		} else if !errors.Is(err, errNotRemembered) {
			return "", "", nil, err
		}
	}
	switch len(cands) {
	case 0:
		return "", "", nil, fmt.Errorf("no node %q in the membership or the address memory", q)
	case 1:
		if found != nil && found.name != cands[0].key {
			found = nil
		}
		return cands[0].name, cands[0].key, found, nil
	}
	parts := make([]string, len(cands))
	for i, c := range cands {
		parts[i] = fmt.Sprintf("%s (%s %s)", c.name, c.key, c.addr)
	}
	return "", "", nil, fmt.Errorf("%q matches %d nodes: %s; give the public key or the address", q, len(cands), strings.Join(parts, ", "))
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
	n.freeAddress(r)
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

// freeAddress forgets a removed node's address claim, so a newcomer may take
// the address. A holder seen alive within dead_peer_grace keeps it: a
// removal (which anyone with the cluster key can send in trust: open) cannot
// free the address of a node that is merely restarting. Callers hold mu.
func (n *Node) freeAddress(r removal) {
	k, err := mesh.ParseKey(r.Node)
	if err != nil {
		return
	}
	now := n.deps.Now()
	if addr, ok := n.book.byKey[k]; ok {
		if h := n.book.local[addr]; now.Sub(h.lastSeen) < n.cfg.DeadPeerGrace {
			n.log.Warn("removal does not free the address: its holder was seen alive within dead_peer_grace",
				"node", r.Node, "address", addr, "last_seen", h.lastSeen)
			return
		}
	}
	if addr, ok := n.book.forget(k, r.Time); ok {
		n.log.Warn("address freed by an operator removal", "node", r.Node, "address", addr, "by", r.By)
	}
	if err := n.book.save(n.cfg.StateDir, now); err != nil {
		n.log.Error("address memory not persisted; will retry", "err", err)
	}
}
