package node

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/acl/nft"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/mesh"
	"github.com/segmesh/segmesh/quarantine"
)

const (
	quarantineFile    = "quarantine.json"
	docKindQuarantine = "quarantine"
)

// ErrNotNewer is returned for a quarantine or release that an entry of the
// same node at least as new already supersedes.
var ErrNotNewer = errors.New("a newer quarantine entry for this node exists")

// quarantineCheck is what entries must pass: in CA mode a signature by a CA
// key or an operator key; in open mode nothing.
func quarantineCheck(t *trustState) quarantine.Checker {
	if t == nil {
		return nil
	}
	keys := append(slices.Clone(t.cas), t.operators...)
	return func(e *quarantine.Entry) error { return quarantine.Verify(e, keys) }
}

// loadQuarantine reads the persisted list (entries that no longer verify
// are dropped).
func (n *Node) loadQuarantine() error {
	n.quar = quarantine.NewList(quarantineCheck(n.trust))
	dropped, err := n.quar.Load(filepath.Join(n.cfg.StateDir, quarantineFile))
	if err != nil {
		return fmt.Errorf("persisted quarantine list: %w", err)
	}
	if dropped > 0 {
		n.log.Warn("persisted quarantine entries dropped: they do not verify against the trusted keys", "dropped", dropped)
	}
	for _, e := range n.quar.Active() {
		n.logQuarantine(e, "persisted")
	}
	return nil
}

// Quarantine takes one quarantine or release entry from the control API
// (open mode: Time and By are filled in when empty; CA mode: it must be
// signed), persists and spreads the list, and returns once this node
// enforces it.
func (n *Node) Quarantine(e api.QuarantineEntry, who string) (*api.QuarantineResult, error) {
	entry := quarantine.Entry(e)
	n.mu.Lock()
	open := n.trust == nil
	n.mu.Unlock()
	if open && entry.Action == quarantine.ActionRelease && entry.Target == n.pub.String() && n.isQuarantined(entry.Target) {
		return nil, fmt.Errorf("release %s: this node is the one quarantined: release it from another node (trust: open; in CA mode a signed release may come from anywhere)", entry.Name)
	}
	if open {
		if entry.Time == 0 {
			entry.Time = n.deps.Now().UnixNano()
		}
		if entry.By == "" {
			entry.By = who
		}
	}
	added, err := n.quar.Add(entry)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", entry.Action, entry.Name, err)
	}
	if !added {
		return nil, fmt.Errorf("%s %s: %w", entry.Action, entry.Name, ErrNotNewer)
	}
	n.quarantineChanged("local")
	n.logQuarantine(entry, "local")
	n.syncAndWait()
	return &api.QuarantineResult{Node: entry.Name, Action: entry.Action, Time: entry.Time}, nil
}

// mergeQuarantine takes a list from the mesh: every newer entry that
// passes the check.
func (n *Node) mergeQuarantine(data []byte) bool {
	entries, err := quarantine.Decode(data)
	if err != nil {
		n.log.Warn("quarantine list rejected", "err", err)
		return false
	}
	before := map[string]quarantine.Entry{}
	for _, e := range n.quar.Entries() {
		before[e.Target] = e
	}
	added, err := n.quar.Merge(entries)
	if err != nil {
		n.log.Warn("quarantine entries rejected", "err", err)
	}
	if added == 0 {
		return false
	}
	for _, e := range n.quar.Entries() {
		if old, ok := before[e.Target]; !ok || old.Time != e.Time || old.Action != e.Action {
			n.logQuarantine(e, "gossip")
		}
	}
	n.quarantineChanged("")
	n.kick()
	return true
}

// quarantineChanged persists the list and, for a local change, publishes it.
func (n *Node) quarantineChanged(source string) {
	n.mu.Lock()
	dir := n.cfg.StateDir
	n.mu.Unlock()
	if err := n.quar.Save(filepath.Join(dir, quarantineFile)); err != nil {
		n.log.Error("quarantine list not persisted", "err", err)
	}
	if source != "local" {
		return
	}
	if b, err := n.quar.Encode(); err == nil {
		if err := n.gossip.PublishUrgent(docKindQuarantine, b); err != nil {
			n.log.Warn("quarantine publish failed; push/pull will spread it", "err", err)
		}
	}
}

func (n *Node) logQuarantine(e quarantine.Entry, source string) {
	self := e.Target == n.pub.String()
	args := []any{"node", e.Name, "public_key", e.Target, "since", e.Since().Format(time.RFC3339), "by", e.By, "source", source}
	switch {
	case e.Quarantined() && self:
		n.log.Error("THIS NODE IS QUARANTINED: mesh traffic only from the allowed segments (forensics)", append(args, "allow_from", e.AllowFrom, "reason", e.Reason)...)
	case e.Quarantined():
		n.log.Warn("node quarantined", append(args, "allow_from", e.AllowFrom, "reason", e.Reason)...)
	default:
		n.log.Warn("node released from quarantine", args...)
	}
}

// quarantinedViews lists the nodes in quarantine for status. Callers
// hold mu.
func (n *Node) quarantinedViews() []api.Quarantined {
	out := []api.Quarantined{}
	if n.quar == nil {
		return out
	}
	for _, e := range n.quar.Active() {
		out = append(out, api.Quarantined{Node: e.Name, PublicKey: e.Target, Since: e.Since().Format(time.RFC3339),
			Reason: e.Reason, AllowFrom: nonNil(e.AllowFrom), By: e.By, Self: e.Target == n.pub.String()})
	}
	return out
}

// isQuarantined reports whether the node with key is in quarantine.
func (n *Node) isQuarantined(key string) bool {
	if n.quar == nil {
		return false
	}
	e, ok := n.quar.Lookup(key)
	return ok && e.Quarantined()
}

// desiredQuarantine is what the quarantine sets hold for the admitted
// peers: each quarantined node's addresses (from the peers, the address
// book, and the IPv6 its key fixes) in Drop, or in Forensic where this
// node is in its allow-from segments; when this node itself is
// quarantined, its addresses in Self and the allow-from members' in
// Allow. Callers hold mu.
func (n *Node) desiredQuarantine(admitted []acl.Member) nft.Quarantine {
	var q nft.Quarantine
	if n.quar == nil {
		return q
	}
	self := n.pub.String()
	mine := n.memberSegments(n.selfMember())
	for _, e := range n.quar.Active() {
		if e.Target == self {
			q.Self = []netip.Addr{n.claim.Address, mesh.Address6(n.cfg.Network6, n.pub)}
			for _, m := range admitted {
				if m.Key != self && meets(n.memberSegments(m), e.AllowFrom) {
					q.Allow = appendValid(q.Allow, m.Addr4, m.Addr6)
				}
			}
			continue
		}
		addrs := n.addressesOf(e.Target, admitted)
		if meets(mine, e.AllowFrom) {
			q.Forensic = append(q.Forensic, addrs...)
		} else {
			q.Drop = append(q.Drop, addrs...)
		}
	}
	for _, l := range []*[]netip.Addr{&q.Drop, &q.Forensic, &q.Self, &q.Allow} {
		slices.SortFunc(*l, func(a, b netip.Addr) int { return a.Compare(b) })
		*l = slices.Compact(*l)
	}
	return q
}

// addressesOf is every overlay address the node with key may use: its
// admitted record's, the address book's IPv4 for it and its key's IPv6.
// Callers hold mu.
func (n *Node) addressesOf(key string, admitted []acl.Member) []netip.Addr {
	var out []netip.Addr
	for _, m := range admitted {
		if m.Key == key {
			out = appendValid(out, m.Addr4, m.Addr6)
		}
	}
	if k, err := mesh.ParseKey(key); err == nil {
		out = appendValid(out, mesh.Address6(n.cfg.Network6, k))
		if a, ok := n.book.byKey[k]; ok {
			out = appendValid(out, a)
		}
	}
	return out
}

func appendValid(out []netip.Addr, addrs ...netip.Addr) []netip.Addr {
	for _, a := range addrs {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// meets reports whether two segment lists share a name.
func meets(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// enforceQuarantine applies the quarantine sets when they changed and
// deletes the conntrack entries of addresses that newly fell under them
// (established flows stop; the per-packet rules stop them anyway). The
// sync loop owns n.appliedQuar.
func (n *Node) enforceQuarantine(admitted []acl.Member) error {
	n.mu.Lock()
	q := n.desiredQuarantine(admitted)
	n.mu.Unlock()
	if n.quarApplied && sameQuarantine(q, n.appliedQuar) {
		return nil
	}
	if err := n.fw.ApplyQuarantine(q); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	prev := n.appliedQuar
	n.appliedQuar, n.quarApplied = q, true
	var cut []netip.Addr
	for _, a := range append(slices.Clone(q.Drop), q.Forensic...) {
		if !slices.Contains(prev.Drop, a) && !slices.Contains(prev.Forensic, a) {
			cut = append(cut, a)
		}
	}
	if len(q.Self) > 0 && len(prev.Self) == 0 {
		// This node was just quarantined: only the allowed members keep
		// their entries.
		for _, m := range admitted {
			for _, a := range []netip.Addr{m.Addr4, m.Addr6} {
				if a.IsValid() && !slices.Contains(q.Allow, a) {
					cut = append(cut, a)
				}
			}
		}
	}
	if len(cut) > 0 {
		cnt, err := n.deps.DeleteConntrack(cut)
		if err != nil {
			n.log.Warn("conntrack entries of quarantined addresses not deleted; the quarantine rules drop their packets anyway", "err", err)
		} else {
			n.log.Info("conntrack entries of quarantined addresses deleted", "count", cnt, "addrs", cut)
		}
	}
	return nil
}

func sameQuarantine(a, b nft.Quarantine) bool {
	return slices.Equal(a.Drop, b.Drop) && slices.Equal(a.Forensic, b.Forensic) &&
		slices.Equal(a.Self, b.Self) && slices.Equal(a.Allow, b.Allow)
}

// quarantineReason is a quarantined peer's status reason.
func quarantineReason(e quarantine.Entry) string {
	r := fmt.Sprintf("quarantined since %s by %s", e.Since().Format(time.RFC3339), e.By)
	if e.Reason != "" {
		r += ": " + e.Reason
	}
	return r
}

// peerState is a peer's state as status and segments show it: quarantined
// for a live (up or suspect) peer in quarantine. Callers hold mu.
func (n *Node) peerState(p *peerView) string {
	if (p.state == api.StateUp || p.state == api.StateSuspect) && n.isQuarantined(p.name) {
		return api.StateQuarantined
	}
	return p.state
}
