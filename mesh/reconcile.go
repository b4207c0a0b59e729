package mesh

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Keepalive is the PersistentKeepalive interval the daemon gives peers, so
// NAT and conntrack state on the underlay stay open and dead peers are noticed.
const Keepalive = 25 * time.Second

// Reconcile makes WireGuard's peer list equal to peers BY DIFF (never
// ReplacePeers): it adds missing peers (keepalive, endpoint, allowed IPs),
// removes peers not in the list, and for existing peers
// changes allowed IPs only when they differ and the endpoint only when the
// desired endpoint differs from the one this Mesh last set for that peer, so
// WireGuard roaming is not fought. Peers with unchanged config are not
// touched (sessions and counters survive); when nothing changed no
// configuration is sent at all. All changes go in one ConfigureDevice call.
// A peer with this device's own key is ignored; duplicate keys, zero keys or
// an allowed IP claimed by two peers are errors and change nothing. Safe for
// concurrent use with Stats.
func (m *Mesh) Reconcile(peers []Peer) (ReconcileResult, error) {
	res, _, err := m.reconcile(peers, false)
	return res, err
}

// ReconcileStats is Reconcile that also returns the per-peer statistics of
// the device dump it reconciled against, so a caller needs one device read
// per round instead of Reconcile plus Stats. The statistics are those of
// the desired peers, ordered by public key as Stats orders them: counters,
// handshake and endpoint as read before the changes were applied, and a
// zero entry (no handshake, no bytes, the endpoint just set) for a peer this
// call added. Peers this call removed are left out. On error nothing is
// returned but the error.
func (m *Mesh) ReconcileStats(peers []Peer) (ReconcileResult, []PeerStats, error) {
	return m.reconcile(peers, true)
}

func (m *Mesh) reconcile(peers []Peer, withStats bool) (ReconcileResult, []PeerStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ReconcileResult{}, nil, ErrClosed
	}
	dev, err := m.wg.Device(m.name)
	if err != nil {
		return ReconcileResult{}, nil, fmt.Errorf("read wireguard device %s: %w", m.name, err)
	}
	plan, err := planPeers(dev, peers, m.endpoints)
	if err != nil {
		return ReconcileResult{}, nil, fmt.Errorf("reconcile %s: %w", m.name, err)
	}
	if plan.selfSkipped {
		m.log.Warn("ignoring a desired peer that has this node's own public key")
	}
	if len(plan.changes) > 0 {
		if err := m.wg.ConfigureDevice(m.name, wgtypes.Config{Peers: plan.changes}); err != nil {
			return ReconcileResult{}, nil, fmt.Errorf("configure peers on %s: %w", m.name, err)
		}
		m.log.Debug("wireguard peers reconciled", "added", plan.result.Added,
			"removed", plan.result.Removed, "updated", plan.result.Updated)
	}
	m.endpoints = plan.endpoints
	if !withStats {
		return plan.result, nil, nil
	}
	return plan.result, plan.stats(dev), nil
}

// stats is the statistics of the desired peers after the plan (see
// ReconcileStats): dev's for the peers it keeps, zero ones for additions.
func (p *peerPlan) stats(dev *wgtypes.Device) []PeerStats {
	out := make([]PeerStats, 0, len(p.endpoints))
	for i := range dev.Peers {
		if _, keep := p.endpoints[dev.Peers[i].PublicKey]; keep {
			out = append(out, statsOf(&dev.Peers[i]))
		}
	}
	for i := range p.changes {
		if c := &p.changes[i]; !c.Remove && !c.UpdateOnly {
			out = append(out, PeerStats{PublicKey: c.PublicKey, Endpoint: addrPortOf(c.Endpoint)})
		}
	}
	sortStats(out)
	return out
}

// peerPlan is the diff between WireGuard's peers and the desired ones.
type peerPlan struct {
	changes     []wgtypes.PeerConfig   // removals, then updates, then additions; each by key
	result      ReconcileResult        // what changes does
	endpoints   map[Key]netip.AddrPort // endpoint bookkeeping once changes are applied
	selfSkipped bool                   // a desired peer had the device's own key
}

// planPeers computes the changes that turn dev's peers into desired.
// lastSet holds the endpoint last set (or seen) per peer; a peer missing
// from it is compared with the endpoint WireGuard currently has.
func planPeers(dev *wgtypes.Device, desired []Peer, lastSet map[Key]netip.AddrPort) (peerPlan, error) {
	plan := peerPlan{endpoints: make(map[Key]netip.AddrPort, len(desired))}
	want, self, err := normalizePeers(desired, dev.PublicKey)
	if err != nil {
		return peerPlan{}, err
	}
	plan.selfSkipped = self

	current := make(map[Key]*wgtypes.Peer, len(dev.Peers))
	var removes, updates, adds []wgtypes.PeerConfig
	for i := range dev.Peers {
		p := &dev.Peers[i]
		current[p.PublicKey] = p
		if _, ok := want[p.PublicKey]; !ok {
			removes = append(removes, wgtypes.PeerConfig{PublicKey: p.PublicKey, Remove: true})
		}
	}
	for k, w := range want {
		plan.endpoints[k] = w.endpoint
		cur, ok := current[k]
		if !ok {
			ka := w.keepalive
			adds = append(adds, wgtypes.PeerConfig{
				PublicKey:                   k,
				Endpoint:                    udpAddr(w.endpoint),
				PersistentKeepaliveInterval: &ka,
				ReplaceAllowedIPs:           true,
				AllowedIPs:                  ipNets(w.allowed),
			})
			continue
		}
		if pc, changed := updateFor(cur, w, lastSet); changed {
			updates = append(updates, pc)
		}
	}
	for _, group := range [][]wgtypes.PeerConfig{removes, updates, adds} {
		slices.SortFunc(group, func(a, b wgtypes.PeerConfig) int {
			return bytes.Compare(a.PublicKey[:], b.PublicKey[:])
		})
		plan.changes = append(plan.changes, group...)
	}
	plan.result = ReconcileResult{Added: len(adds), Removed: len(removes), Updated: len(updates)}
	return plan, nil
}

// updateFor returns the UpdateOnly change that brings cur to w, and
// whether anything differs.
func updateFor(cur *wgtypes.Peer, w wantPeer, lastSet map[Key]netip.AddrPort) (wgtypes.PeerConfig, bool) {
	pc := wgtypes.PeerConfig{PublicKey: cur.PublicKey, UpdateOnly: true}
	changed := false
	if !slices.Equal(normalizePrefixes(prefixesOf(cur.AllowedIPs)), w.allowed) {
		pc.ReplaceAllowedIPs = true
		pc.AllowedIPs = ipNets(w.allowed)
		changed = true
	}
	last, known := lastSet[cur.PublicKey]
	if !known {
		last = addrPortOf(cur.Endpoint)
	}
	if w.endpoint.IsValid() && w.endpoint != last {
		pc.Endpoint = udpAddr(w.endpoint)
		changed = true
	}
	if cur.PersistentKeepaliveInterval != w.keepalive {
		ka := w.keepalive
		pc.PersistentKeepaliveInterval = &ka
		changed = true
	}
	return pc, changed
}

// wantPeer is a desired peer in normal form.
type wantPeer struct {
	endpoint  netip.AddrPort // unmapped; zero when unknown
	allowed   []netip.Prefix // masked, sorted, unique
	keepalive time.Duration
}

// normalizePeers validates desired and indexes it by key, dropping a peer
// with the device's own key (reported by the bool).
func normalizePeers(desired []Peer, self Key) (map[Key]wantPeer, bool, error) {
	want := make(map[Key]wantPeer, len(desired))
	owner := map[netip.Prefix]Key{}
	skipped := false
	for _, p := range desired {
		if p.PublicKey == (Key{}) {
			return nil, false, fmt.Errorf("peer with an all-zero public key")
		}
		if self != (Key{}) && p.PublicKey == self {
			skipped = true
			continue
		}
		if _, dup := want[p.PublicKey]; dup {
			return nil, false, fmt.Errorf("peer %s listed twice", p.PublicKey)
		}
		for _, a := range p.AllowedIPs {
			if !a.IsValid() {
				return nil, false, fmt.Errorf("peer %s: invalid allowed IP %q", p.PublicKey, a)
			}
		}
		allowed := normalizePrefixes(p.AllowedIPs)
		for _, a := range allowed {
			if other, taken := owner[a]; taken {
				return nil, false, fmt.Errorf("allowed IP %s claimed by peers %s and %s", a, other, p.PublicKey)
			}
			owner[a] = p.PublicKey
		}
		want[p.PublicKey] = wantPeer{endpoint: normEndpoint(p.Endpoint), allowed: allowed, keepalive: p.Keepalive}
	}
	return want, skipped, nil
}

// normalizePrefixes masks, unmaps, sorts and deduplicates ps.
func normalizePrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		a := p.Addr()
		bits := p.Bits()
		if a.Is4In6() {
			a = a.Unmap()
			bits = max(bits-96, 0)
		}
		out = append(out, netip.PrefixFrom(a, bits).Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

func prefixesOf(ns []net.IPNet) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ns))
	for _, n := range ns {
		if p, ok := prefixOf(n); ok {
			out = append(out, p)
		}
	}
	return out
}

func ipNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(ps))
	for _, p := range ps {
		out = append(out, *ipNet(p))
	}
	return out
}
