package acl

import (
	"slices"
	"strings"
)

// Observed is one inbound mesh flow seen by a node: a denied or audited flow
// from its flow log (for Suggest), or a live flow from conntrack (for
// NewlyDenied). It is evaluated on segment sets, not on addresses.
type Observed struct {
	// SrcSegments and DstSegments are the segments of the source node and
	// of the receiving node, as the node saw them (order does not matter).
	// Names the policy at hand does not define are ignored.
	SrcSegments, DstSegments []string
	// SrcTags and DstTags are optional. When non-nil they replace
	// SrcSegments (DstSegments): the segments are then computed with the
	// policy at hand (Policy.SegmentsOf), so a changed selector is seen.
	SrcTags, DstTags map[string]string
	// SrcName and DstName are the node names, only for messages.
	SrcName, DstName string
	// Proto is "tcp", "udp", "icmp", "icmpv6" (counts as icmp) or any other
	// protocol name or number, which only "any" allows. Case does not matter;
	// the numbers 6, 17, 1 and 58 stand for tcp, udp, icmp and icmpv6.
	Proto string
	// Port is the destination port (ignored for icmp).
	Port uint16
	// Count is how many packets were seen (only for messages).
	Count uint64
	// Audited marks a flow seen passing although no rule allowed it (a flow
	// logged as audited in audit mode). NewlyDenied counts it as passing
	// under the old policy whatever that policy says; see NewlyDenied.
	Audited bool
}

// flowProto is the protocol of o as policy ports name it: "tcp", "udp",
// "icmp", or the lower-cased original for protocols only "any" allows.
func (o *Observed) flowProto() string {
	switch p := strings.ToLower(strings.TrimSpace(o.Proto)); p {
	case protoNameTCP, "6":
		return protoNameTCP
	case protoNameUDP, "17":
		return protoNameUDP
	case protoNameICMP, "icmpv6", "ipv6-icmp", "1", "58":
		return protoNameICMP
	default:
		return p
	}
}

// segmentsUnder returns the source and destination segments of o under p:
// from the tags when they are set, else the given names that p defines.
// Both are in p's file order, without duplicates.
func (o *Observed) segmentsUnder(p *Policy) (src, dst []string) {
	return p.nodeSegments(o.SrcTags, o.SrcSegments), p.nodeSegments(o.DstTags, o.DstSegments)
}

// nodeSegments returns the segments of p (file order, no duplicates) that a
// node is in: those matching tags when tags is non-nil, else those named in
// names.
func (p *Policy) nodeSegments(tags map[string]string, names []string) []string {
	if p == nil {
		return nil
	}
	var out []string
	for i := range p.Segments {
		s := &p.Segments[i]
		in := slices.Contains(names, s.Name)
		if tags != nil {
			in = s.matches(tags)
		}
		if in && !slices.Contains(out, s.Name) {
			out = append(out, s.Name)
		}
	}
	return out
}

// allowsObserved reports whether a rule of p allows o (nil p allows nothing).
func (p *Policy) allowsObserved(o *Observed) bool {
	if p == nil {
		return false
	}
	src, dst := o.segmentsUnder(p)
	return len(p.allowingRules(src, dst, o.flowProto(), o.Port)) > 0
}

// passes reports whether o gets through a node enforcing p: a rule allows
// it, or p is in audit mode. A nil p (no policy) lets nothing through.
func (p *Policy) passes(o *Observed) bool {
	return p != nil && (p.Mode == ModeAudit || p.allowsObserved(o))
}
