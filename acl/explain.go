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
	// Trace says, for every rule of the policy in file order, how its
	// from, to and ports fared against the flow.
	Trace []RuleTrace
}

// RuleTrace is how one rule fared in Explain.
type RuleTrace struct {
	Rule  string
	Allow bool // FromMatch, ToMatch and a port entry matched
	// From and To are the rule's from and to lists, each segment with the
	// terms of its selector evaluated on the source or destination node.
	From, To           []SegmentTrace
	FromMatch, ToMatch bool
	// Entry is the port entry that matches the flow as written (a port,
	// e.g. "tcp/5000-6000", or a service name); "" when none does.
	Entry string
	// Service is the service Entry names ("" when it is a port).
	Service string
	// Entries is the rule's ports list as written.
	Entries []string
}

// SegmentTrace is one segment of a rule's from or to list evaluated on a
// node; the Wildcard matches every node and has no terms (nor has a
// segment the policy does not define, which matches no node).
type SegmentTrace struct {
	Segment string
	Match   bool
	Terms   []TermTrace // in SelectorString order
}

// TermTrace is one selector term evaluated on a node.
type TermTrace struct {
	Term    string // as written, e.g. `env: [prod, staging]` or `"!canary": "*"`
	Match   bool
	Tag     string // the term's tag key
	Present bool   // whether the node has the tag
	Value   string // the node's value of it (when Present)
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
	for i := range p.Rules {
		v.Trace = append(v.Trace, p.traceRule(&p.Rules[i], from.Tags, to.Tags, proto, port))
	}
	return v
}

// traceRule evaluates rule r for a flow between nodes tagged fromTags and
// toTags; it agrees with allowingRules.
func (p *Policy) traceRule(r *Rule, fromTags, toTags map[string]string, proto string, port uint16) RuleTrace {
	t := RuleTrace{Rule: r.Name}
	t.From, t.FromMatch = p.traceList(r.From, fromTags)
	t.To, t.ToMatch = p.traceList(r.To, toTags)
	entries := r.Entries
	if len(entries) == 0 {
		for _, pt := range r.Ports {
			entries = append(entries, PortEntry{Ports: []Port{pt}})
		}
	}
	for _, e := range entries {
		t.Entries = append(t.Entries, e.String())
		if t.Entry != "" {
			continue
		}
		for _, pt := range e.Ports {
			if pt.valid() && pt.Matches(proto, port) {
				t.Entry, t.Service = e.String(), e.Service
				break
			}
		}
	}
	t.Allow = t.FromMatch && t.ToMatch && t.Entry != ""
	return t
}

// traceList evaluates a rule's from or to list on a node with tags.
func (p *Policy) traceList(names []string, tags map[string]string) ([]SegmentTrace, bool) {
	out := make([]SegmentTrace, 0, len(names))
	found := false
	for _, name := range names {
		st := SegmentTrace{Segment: name, Match: name == Wildcard}
		if name != Wildcard {
			if seg := p.segment(name); seg != nil {
				st.Match = seg.matches(tags)
				for _, term := range seg.allTerms() {
					v, present := tags[term.Key]
					st.Terms = append(st.Terms, TermTrace{Term: term.String(), Match: term.matches(tags), Tag: term.Key, Present: present, Value: v})
				}
			}
		}
		found = found || st.Match
		out = append(out, st)
	}
	return out, found
}

// segment returns the first segment called name (nil when there is none).
func (p *Policy) segment(name string) *Segment {
	for i := range p.Segments {
		if p.Segments[i].Name == name {
			return &p.Segments[i]
		}
	}
	return nil
}
