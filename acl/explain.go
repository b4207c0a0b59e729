package acl

import "strings"

// Verdict is the answer of Explain.
type Verdict struct {
	// Allow says whether a rule allows the flow. In audit mode a flow with
	// Allow false is still accepted, but logged and counted.
	Allow bool
	// Rules names the rules that allow the flow, in file order.
	Rules []string
	// FromSegments and ToSegments are the sorted segments of the two nodes.
	FromSegments, ToSegments []string
	// Mode is the policy's mode (enforce when there is no policy).
	Mode Mode
}

// Explain tells whether policy p lets node from reach node to with protocol
// proto ("tcp", "udp" or "icmp"; "icmpv6" counts as "icmp"; other protocols
// are allowed only by "any") on destination port port (ignored for icmp).
// Segments come from the members' tags, as in Compile, and from is taken to
// be an admitted mesh node (so "*" in a rule's from matches it). A nil p
// allows nothing. Explain agrees with Compile for every peer with a valid
// overlay address; it does not special-case from == to (a node's traffic to
// itself never crosses the mesh).
func Explain(p *Policy, from, to Member, proto string, port uint16) Verdict {
	v := Verdict{Mode: ModeEnforce}
	if p == nil {
		return v
	}
	if p.Mode != "" {
		v.Mode = p.Mode
	}
	proto = strings.ToLower(proto)
	if proto == "icmpv6" {
		proto = protoNameICMP
	}
	v.FromSegments = p.SegmentsOf(from.Tags)
	v.ToSegments = p.SegmentsOf(to.Tags)
	v.Rules = p.allowingRules(v.FromSegments, v.ToSegments, proto, port)
	v.Allow = len(v.Rules) > 0
	return v
}
