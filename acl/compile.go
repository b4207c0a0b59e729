package acl

import (
	"iter"
	"net/netip"
	"slices"
)

// Compile computes the inbound allow state of node self from policy p and
// the admitted mesh peers (the caller passes only peers that are WireGuard
// peers: in CA mode a peer without a valid certificate is not among them).
//
// For every rule whose To admits self (one of self's segments, or "*"), and
// every peer whose segments meet the rule's From (or From holds "*", which
// matches any peer, even one in no segment), each valid overlay address of
// the peer (Addr4, Addr6) gets the rule's ports: tcp/udp ranges as Ports
// elements, icmp in ICMP, "any" in Any.
//
// The result is deterministic and ready for nftables interval sets: Ports
// sorted by (Src, Proto, PortLo) with overlapping or adjacent ranges of the
// same source and protocol merged; ICMP and Any sorted and deduplicated; a
// source in Any has no Ports or ICMP entries. Self is never a source: a
// peer with self's Key, and any address that is one of self's own, are
// skipped. Two peers sharing an address (which membership should prevent)
// give it the union of their access. Local holds self's valid addresses (IPv4 first), Audit is set in
// audit mode. Addresses are unmapped and stripped of zones. A nil p allows
// nothing (fail closed): only Local is set.
//
// Malformed ports (not what ParsePort produces) and empty selectors in a
// hand-built policy are ignored; Parse never produces them.
func Compile(p *Policy, self Member, peers []Member) Desired {
	d := Desired{Local: memberAddrs(self)}
	if p == nil {
		return d
	}
	d.Audit = p.Mode == ModeAudit
	selfSegs := p.SegmentsOfMember(self)
	var rules []*Rule
	for i := range p.Rules {
		if listAdmits(p.Rules[i].To, selfSegs) {
			rules = append(rules, &p.Rules[i])
		}
	}
	if len(rules) == 0 {
		return d
	}

	// Peers matching the same subset of rules share one allow set.
	cache := map[string]*allowSet{}
	mask := make([]byte, (len(rules)+7)/8)
	var srcs []srcAccess
	for peer, addrs := range peersWithAddrs(self, peers) {
		peerSegs := p.SegmentsOfMember(*peer)
		clear(mask)
		matched := false
		for j, r := range rules {
			if listAdmits(r.From, peerSegs) {
				mask[j/8] |= 1 << (j % 8)
				matched = true
			}
		}
		if !matched {
			continue
		}
		set, ok := cache[string(mask)]
		if !ok {
			set = newAllowSet(rules, mask)
			cache[string(mask)] = set
		}
		for _, a := range addrs {
			if !slices.Contains(d.Local, a) {
				srcs = append(srcs, srcAccess{addr: a, set: set})
			}
		}
	}
	slices.SortFunc(srcs, func(a, b srcAccess) int { return a.addr.Compare(b.addr) })
	srcs = mergeSources(srcs)

	var nPorts, nICMP, nAny int
	for _, s := range srcs {
		switch {
		case s.set.any:
			nAny++
		default:
			nPorts += len(s.set.tcp) + len(s.set.udp)
			if s.set.icmp {
				nICMP++
			}
		}
	}
	// Sized once (the port list of a large mesh is big); empty stays nil.
	if nPorts > 0 {
		d.Ports = make([]PortElement, 0, nPorts)
	}
	if nICMP > 0 {
		d.ICMP = make([]netip.Addr, 0, nICMP)
	}
	if nAny > 0 {
		d.Any = make([]netip.Addr, 0, nAny)
	}
	for _, s := range srcs {
		switch {
		case s.set.any:
			d.Any = append(d.Any, s.addr)
		default:
			if s.set.icmp {
				d.ICMP = append(d.ICMP, s.addr)
			}
			for _, r := range s.set.tcp {
				d.Ports = append(d.Ports, PortElement{Src: s.addr, Proto: ProtoTCP, PortLo: r.lo, PortHi: r.hi})
			}
			for _, r := range s.set.udp {
				d.Ports = append(d.Ports, PortElement{Src: s.addr, Proto: ProtoUDP, PortLo: r.lo, PortHi: r.hi})
			}
		}
	}
	return d
}

// srcAccess is one allowed source address and what it may reach.
type srcAccess struct {
	addr netip.Addr
	set  *allowSet
}

// mergeSources joins entries of srcs (sorted by address) that share an
// address: two members claiming one address get the union of their access.
func mergeSources(srcs []srcAccess) []srcAccess {
	out := srcs[:0]
	for _, s := range srcs {
		if n := len(out); n > 0 && out[n-1].addr == s.addr {
			if out[n-1].set != s.set {
				out[n-1].set = out[n-1].set.union(s.set)
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// memberAddrs returns m's valid overlay addresses, unmapped and without
// zone, IPv4 first, deduplicated.
// peersWithAddrs yields the peers other than self that have an overlay
// address, with their addresses (memberAddrs).
func peersWithAddrs(self Member, peers []Member) iter.Seq2[*Member, []netip.Addr] {
	return func(yield func(*Member, []netip.Addr) bool) {
		for i := range peers {
			peer := &peers[i]
			if self.Key != "" && peer.Key == self.Key {
				continue
			}
			if addrs := memberAddrs(*peer); len(addrs) > 0 && !yield(peer, addrs) {
				return
			}
		}
	}
}

func memberAddrs(m Member) []netip.Addr {
	var out []netip.Addr
	for _, a := range []netip.Addr{m.Addr4, m.Addr6} {
		if !a.IsValid() {
			continue
		}
		a = a.Unmap().WithZone("")
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// allowRange is an inclusive port range.
type allowRange struct{ lo, hi uint16 }

// allowSet is what one source may reach, normalized: when any is set the
// rest is empty; tcp and udp are sorted, non-overlapping, non-adjacent.
type allowSet struct {
	any, icmp bool
	tcp, udp  []allowRange
}

// newAllowSet gathers the ports of the rules selected by mask.
func newAllowSet(rules []*Rule, mask []byte) *allowSet {
	s := &allowSet{}
	for j, r := range rules {
		if mask[j/8]&(1<<(j%8)) == 0 {
			continue
		}
		for _, pt := range r.Ports {
			if !pt.valid() {
				continue
			}
			switch pt.Proto {
			case protoNameAny:
				s.any = true
			case protoNameICMP:
				s.icmp = true
			case protoNameTCP:
				s.tcp = append(s.tcp, allowRange{pt.Lo, pt.Hi})
			case protoNameUDP:
				s.udp = append(s.udp, allowRange{pt.Lo, pt.Hi})
			}
		}
	}
	s.normalize()
	return s
}

// union returns a new set allowing what s or o allows.
func (s *allowSet) union(o *allowSet) *allowSet {
	u := &allowSet{
		any:  s.any || o.any,
		icmp: s.icmp || o.icmp,
		tcp:  append(slices.Clone(s.tcp), o.tcp...),
		udp:  append(slices.Clone(s.udp), o.udp...),
	}
	u.normalize()
	return u
}

func (s *allowSet) normalize() {
	if s.any {
		s.icmp, s.tcp, s.udp = false, nil, nil
		return
	}
	s.tcp = mergeRanges(s.tcp)
	s.udp = mergeRanges(s.udp)
}

// mergeRanges sorts rs and merges overlapping or adjacent ranges.
func mergeRanges(rs []allowRange) []allowRange {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b allowRange) int { return int(a.lo) - int(b.lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if int(r.lo) <= int(last.hi)+1 {
			last.hi = max(last.hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}
