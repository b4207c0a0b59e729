package acl

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Egress is the compiler's output for the sender side (DESIGN.md
// "Workloads", egress): what each local identity — the node's (processes
// in no workload) and each workload's — may send to which destination, by
// destination identity. A destination's identity is the exact set of
// segments the peer is in (its node's and its workloads'); peers with the
// same set share one, so a peer joining is one destination element and
// the elements grow with peers + locals × destinations × ports.
type Egress struct {
	Locals       []LocalIdentity // the node's first (Workload ""), then the workloads in order
	Destinations []Source        // destination address -> destination identity, sorted by address
	DestSegments map[uint32][]string
}

// LocalIdentity is one local identity and its grants.
type LocalIdentity struct {
	Workload string   // "" for the node
	Segments []string // its source segments (sorted)
	Grants   []Grant  // sorted by Dest; only destinations it may reach
}

// Grant is what a local identity may send to the destinations of
// identity Dest; ports as in Identity.
type Grant struct {
	Dest     uint32
	Any      bool
	ICMP     bool
	TCP, UDP []PortRange
}

// CompileEgress computes self's egress under p towards the admitted peers,
// numbering destination identities with a (stable while their segment set
// exists; use an allocator of its own, not the ingress one). A nil p
// grants nothing: every local identity has no grants.
func (a *IdentityAllocator) CompileEgress(p *Policy, self Member, peers []Member) Egress {
	locals := []LocalIdentity{{Segments: p.SegmentsOf(self.Tags)}}
	for _, w := range self.Workloads {
		locals = append(locals, LocalIdentity{Workload: w.Name, Segments: p.SegmentsOf(WorkloadTags(self.Tags, w))})
	}
	e := Egress{Locals: locals, DestSegments: map[uint32][]string{}}
	if p == nil {
		a.retain(nil)
		return e
	}
	type dest struct {
		segs   []string
		grants []*allowSet // per local identity; nil: nothing
	}
	dests := map[string]*dest{}
	byAddr := map[netip.Addr]string{}
	for peer, addrs := range peersWithAddrs(self, peers) {
		segs := p.SegmentsOfMember(*peer)
		key := strings.Join(segs, "\x00")
		if dests[key] == nil {
			d := &dest{segs: segs, grants: make([]*allowSet, len(locals))}
			any := false
			for li, l := range locals {
				d.grants[li] = egressGrant(p, l.Segments, segs)
				any = any || d.grants[li] != nil
			}
			if !any {
				d = &dest{segs: segs} // reachable by no local identity
			}
			dests[key] = d
		}
		if dests[key].grants == nil {
			continue
		}
		for _, ad := range addrs {
			if _, dup := byAddr[ad]; dup {
				continue // an address two peers claim goes to the first
			}
			byAddr[ad] = key
		}
	}
	used := map[string]bool{}
	for _, k := range byAddr {
		used[k] = true
	}
	a.retain(used)
	keys := slices.Sorted(maps.Keys(used))
	ids := make(map[string]uint32, len(keys))
	for _, k := range keys {
		ids[k] = a.number(k)
		e.DestSegments[ids[k]] = dests[k].segs
	}
	for ad, k := range byAddr {
		e.Destinations = append(e.Destinations, Source{Addr: ad, ID: ids[k]})
	}
	slices.SortFunc(e.Destinations, func(x, y Source) int { return x.Addr.Compare(y.Addr) })
	for li := range e.Locals {
		for _, k := range keys {
			s := dests[k].grants[li]
			if s == nil {
				continue
			}
			e.Locals[li].Grants = append(e.Locals[li].Grants, Grant{Dest: ids[k], Any: s.any, ICMP: s.icmp,
				TCP: portRanges(s.tcp), UDP: portRanges(s.udp)})
		}
		slices.SortFunc(e.Locals[li].Grants, func(x, y Grant) int { return int(int64(x.Dest) - int64(y.Dest)) })
	}
	return e
}

// egressGrant gathers the ports of the rules from a segment of src to a
// segment of dst; nil when none applies.
func egressGrant(p *Policy, src, dst []string) *allowSet {
	var rules []*Rule
	for i := range p.Rules {
		r := &p.Rules[i]
		if listAdmits(r.From, src) && listAdmits(r.To, dst) {
			rules = append(rules, r)
		}
	}
	if len(rules) == 0 {
		return nil
	}
	mask := make([]byte, (len(rules)+7)/8)
	for j := range rules {
		mask[j/8] |= 1 << (j % 8)
	}
	return newAllowSet(rules, mask)
}
