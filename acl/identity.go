package acl

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Enforced is the compiler's output for the kernel backend (acl/nft): the
// one interface between the policy language and the enforcement. Every
// admitted source address maps to one identity; an identity is what every
// source of one exact set of matched source segments may reach.
type Enforced struct {
	Identities []Identity   // sorted by ID, each referenced by a Source
	Sources    []Source     // sorted by address, each address once
	Local      []netip.Addr // this node's own overlay addresses (only-to-me), IPv4 first
	Audit      bool         // mode: audit
}

// Identity is one security identity: a small number, the segment set it
// stands for, and the ports its sources may reach on this node. When Any is
// set, ICMP, TCP and UDP are empty. TCP and UDP are sorted, non-overlapping
// and non-adjacent.
type Identity struct {
	ID       uint32
	Segments []string // the exact set of matched source segments (sorted)
	Any      bool     // every protocol and port
	ICMP     bool     // ICMP/ICMPv6 echo requests
	TCP, UDP []PortRange
}

// PortRange is an inclusive port range (Lo == Hi: one port).
type PortRange struct{ Lo, Hi uint16 }

// Source is one allowed source address and its identity.
type Source struct {
	Addr netip.Addr
	ID   uint32
}

// IdentityAllocator numbers segment sets. A set keeps its number across
// compilations while some source has it; a set no source has any more is
// freed, and its number may later go to another set. Numbers start at 1.
// Not safe for concurrent use.
type IdentityAllocator struct {
	ids  map[string]uint32 // segment-set key -> number
	free []uint32          // freed numbers, reused smallest first
	next uint32
}

// NewIdentityAllocator returns an allocator with no identities.
func NewIdentityAllocator() *IdentityAllocator {
	return &IdentityAllocator{ids: map[string]uint32{}, next: 1}
}

// Compile computes the enforced state of node self from policy p and the
// admitted peers, numbering identities with a (see Compile for which peers
// and rules count: the same sources get the same ports). A source's
// identity is the set of segments it matches: a peer in segments {db, prod}
// and every other peer in exactly {db, prod} share one identity. An address
// that two peers claim gets the identity of the union of their segments and
// of their access. A nil p allows nothing.
func (a *IdentityAllocator) Compile(p *Policy, self Member, peers []Member) Enforced {
	e := Enforced{Local: memberAddrs(self)}
	if p == nil {
		a.retain(nil)
		return e
	}
	e.Audit = p.Mode == ModeAudit
	selfSegs := p.SegmentsOfMember(self)
	var rules []*Rule
	for i := range p.Rules {
		if listAdmits(p.Rules[i].To, selfSegs) {
			rules = append(rules, &p.Rules[i])
		}
	}
	type group struct {
		segs []string
		set  *allowSet
	}
	groups := map[string]*group{} // by segment-set key
	bySrc := map[netip.Addr]*group{}
	mask := make([]byte, (len(rules)+7)/8)
	for peer, addrs := range peersWithAddrs(self, peers) {
		segs := p.SegmentsOfMember(*peer)
		key := strings.Join(segs, "\x00")
		g, ok := groups[key]
		if !ok {
			clear(mask)
			matched := false
			for j, r := range rules {
				if listAdmits(r.From, segs) {
					mask[j/8] |= 1 << (j % 8)
					matched = true
				}
			}
			g = &group{segs: segs}
			if matched {
				g.set = newAllowSet(rules, mask)
			}
			groups[key] = g
		}
		if g.set == nil {
			continue
		}
		for _, ad := range addrs {
			if slices.Contains(e.Local, ad) {
				continue
			}
			if o := bySrc[ad]; o != nil && o != g {
				// Two peers claim ad: the union of both.
				segs := append(slices.Clone(o.segs), g.segs...)
				slices.Sort(segs)
				segs = slices.Compact(segs)
				k := strings.Join(segs, "\x00") + "\x00+" // never a plain segment set
				u, ok := groups[k]
				if !ok {
					u = &group{segs: segs, set: o.set.union(g.set)}
					groups[k] = u
				}
				bySrc[ad] = u
				continue
			}
			bySrc[ad] = g
		}
	}
	used := map[string]bool{}
	keyOf := make(map[*group]string, len(groups))
	for k, g := range groups {
		keyOf[g] = k
	}
	for _, g := range bySrc {
		used[keyOf[g]] = true
	}
	a.retain(used)
	keys := slices.Sorted(maps.Keys(used)) // new sets numbered in a stable order
	ids := map[string]uint32{}
	for _, k := range keys {
		ids[k] = a.number(k)
	}
	e.Sources = make([]Source, 0, len(bySrc))
	for ad, g := range bySrc {
		e.Sources = append(e.Sources, Source{Addr: ad, ID: ids[keyOf[g]]})
	}
	slices.SortFunc(e.Sources, func(x, y Source) int { return x.Addr.Compare(y.Addr) })
	for _, k := range keys {
		g := groups[k]
		e.Identities = append(e.Identities, Identity{ID: ids[k], Segments: g.segs, Any: g.set.any, ICMP: g.set.icmp,
			TCP: portRanges(g.set.tcp), UDP: portRanges(g.set.udp)})
	}
	slices.SortFunc(e.Identities, func(x, y Identity) int { return int(x.ID) - int(y.ID) })
	return e
}

// retain frees the numbers of the keys not in used.
func (a *IdentityAllocator) retain(used map[string]bool) {
	for k, id := range a.ids {
		if !used[k] {
			delete(a.ids, k)
			a.free = append(a.free, id)
		}
	}
	slices.Sort(a.free)
}

// number returns k's number, allocating one for a new key.
func (a *IdentityAllocator) number(k string) uint32 {
	if id, ok := a.ids[k]; ok {
		return id
	}
	var id uint32
	if len(a.free) > 0 {
		id, a.free = a.free[0], a.free[1:]
	} else {
		id = a.next
		a.next++
	}
	a.ids[k] = id
	return id
}

func portRanges(rs []allowRange) []PortRange {
	if len(rs) == 0 {
		return nil
	}
	out := make([]PortRange, len(rs))
	for i, r := range rs {
		out[i] = PortRange{Lo: r.lo, Hi: r.hi}
	}
	return out
}

// PerSource expands e into the per-source form of Compile (each source's
// identity written out): what the identities enforce, source by source.
func (e Enforced) PerSource() Desired {
	d := Desired{Local: e.Local, Audit: e.Audit}
	ids := make(map[uint32]Identity, len(e.Identities))
	for _, id := range e.Identities {
		ids[id.ID] = id
	}
	for _, s := range e.Sources {
		id := ids[s.ID]
		switch {
		case id.Any:
			d.Any = append(d.Any, s.Addr)
			continue
		case id.ICMP:
			d.ICMP = append(d.ICMP, s.Addr)
		}
		for _, r := range id.TCP {
			d.Ports = append(d.Ports, PortElement{Src: s.Addr, Proto: ProtoTCP, PortLo: r.Lo, PortHi: r.Hi})
		}
		for _, r := range id.UDP {
			d.Ports = append(d.Ports, PortElement{Src: s.Addr, Proto: ProtoUDP, PortLo: r.Lo, PortHi: r.Hi})
		}
	}
	return d
}
