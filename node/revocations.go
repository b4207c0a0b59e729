package node

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
)

// ErrOpenMode is returned by CA-only operations in trust: open.
var ErrOpenMode = errors.New("CA mode is off (trust: open): set trust.ca_file and trust.cert_file")

// Revoke adds one CA-signed revocation, persists and spreads the list, and
// returns once this node enforces it (the peer is out of WireGuard and the
// sets, its conntrack entries deleted).
func (n *Node) Revoke(entry []byte) (*api.RevocationResult, error) {
	n.mu.Lock()
	t := n.trust
	n.mu.Unlock()
	if t == nil {
		return nil, ErrOpenMode
	}
	e, err := ca.ParseRevocation(entry)
	if err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	added, err := t.revs.Add(e)
	if err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	res := &api.RevocationResult{Added: added, Target: e.Target(), Version: t.revs.Version()}
	if !added {
		return res, nil
	}
	if err := n.saveRevocations(t); err != nil {
		return nil, err
	}
	if b, err := t.revs.Encode(); err == nil {
		if err := n.gossip.PublishUrgent(docKindRevocations, b); err != nil {
			n.log.Warn("revocations publish failed; push/pull will spread them", "err", err)
		}
	}
	n.log.Warn("revocation added", "target", res.Target, "version", res.Version, "source", "local")
	n.syncAndWait()
	return res, nil
}

// mergeRevocations takes a revocation list from the mesh: every entry signed
// by a trusted CA is added (the list only grows).
func (n *Node) mergeRevocations(data []byte) bool {
	n.mu.Lock()
	t := n.trust
	n.mu.Unlock()
	if t == nil {
		return false
	}
	entries, err := ca.DecodeRevocationList(data)
	if err != nil {
		n.log.Warn("revocation list rejected", "err", err)
		return false
	}
	added, err := t.revs.AddAll(entries)
	if err != nil {
		n.log.Warn("some revocations rejected", "err", err)
	}
	if added == 0 {
		return false
	}
	if err := n.saveRevocations(t); err != nil {
		n.log.Error("revocations not persisted", "err", err)
	}
	n.log.Warn("revocations received", "added", added, "version", t.revs.Version())
	n.kick()
	return true
}

func (n *Node) saveRevocations(t *trustState) error {
	n.mu.Lock()
	dir := n.cfg.StateDir
	n.mu.Unlock()
	if err := t.revs.Save(filepath.Join(dir, revocationsFile)); err != nil {
		return fmt.Errorf("persist revocations: %w", err)
	}
	return nil
}

// Revocations lists the revocation list.
func (n *Node) Revocations() (*api.Revocations, error) {
	n.mu.Lock()
	t := n.trust
	n.mu.Unlock()
	if t == nil {
		return nil, ErrOpenMode
	}
	out := &api.Revocations{Version: t.revs.Version(), Entries: []api.RevocationEntry{}}
	for _, e := range t.revs.Entries() {
		info := e.Info()
		out.Entries = append(out.Entries, api.RevocationEntry{Serial: info.Serial, PublicKey: info.PublicKey,
			Reason: info.Reason, Time: info.Time, Issuer: info.Issuer})
	}
	return out, nil
}
