package acl

import (
	"maps"
	"slices"
)

// Kinds of RuleChange and SegmentChange.
const (
	ChangeAdded   = "added"
	ChangeRemoved = "removed"
	ChangeChanged = "changed"
)

// RuleChange is one rule that differs between two policies, matched by
// name. Old is nil when Kind is added, New when it is removed; both are
// copies.
type RuleChange struct {
	Kind     string // ChangeAdded, ChangeRemoved or ChangeChanged
	Name     string
	Old, New *Rule
}

// SegmentChange is one segment that differs between two policies, matched
// by name. Old is nil when Kind is added, New when it is removed; both are
// copies.
type SegmentChange struct {
	Kind     string // ChangeAdded, ChangeRemoved or ChangeChanged
	Name     string
	Old, New *Segment
}

// Diff compares two policies (nil is an empty enforce policy, which is what
// a node without policy enforces).
//
// Rules and segments are matched by name (a renamed rule is one removed and
// one added). A rule is changed when what it allows changes: its from or to
// as a set of names (order and repeats do not matter) or its ports as a set
// of flows (tcp/1, tcp/2 equals tcp/1-2; "any" equals any list holding
// "any"). A segment is changed when its selector differs. Positions and
// the order of rules and segments never count. Changes come in old's file
// order (removed and changed), then the added ones in new's file order.
// In hand-built policies only the first of several same-named entries counts.
//
// modeChange is "" when the mode is the same, else "<old> -> <new>", e.g.
// "audit -> enforce" (an empty Mode counts as enforce).
//
// Tests are not compared.
func Diff(oldP, newP *Policy) (rules []RuleChange, segments []SegmentChange, modeChange string) {
	if oldP == nil {
		oldP = &Policy{}
	}
	if newP == nil {
		newP = &Policy{}
	}
	if om, nm := diffModeOf(oldP), diffModeOf(newP); om != nm {
		modeChange = string(om) + " -> " + string(nm)
	}

	oldRules, newRules := diffRulesByName(oldP.Rules), diffRulesByName(newP.Rules)
	for _, name := range diffRuleNames(oldP.Rules) {
		o := oldRules[name]
		switch n, ok := newRules[name]; {
		case !ok:
			rules = append(rules, RuleChange{Kind: ChangeRemoved, Name: name, Old: diffCloneRule(o)})
		case !diffSameRule(o, n):
			rules = append(rules, RuleChange{Kind: ChangeChanged, Name: name, Old: diffCloneRule(o), New: diffCloneRule(n)})
		}
	}
	for _, name := range diffRuleNames(newP.Rules) {
		if _, ok := oldRules[name]; !ok {
			rules = append(rules, RuleChange{Kind: ChangeAdded, Name: name, New: diffCloneRule(newRules[name])})
		}
	}

	oldSegs, newSegs := diffSegmentsByName(oldP.Segments), diffSegmentsByName(newP.Segments)
	for _, name := range diffSegmentNames(oldP.Segments) {
		o := oldSegs[name]
		switch n, ok := newSegs[name]; {
		case !ok:
			segments = append(segments, SegmentChange{Kind: ChangeRemoved, Name: name, Old: diffCloneSegment(o)})
		case !sameSelector(o, n):
			segments = append(segments, SegmentChange{Kind: ChangeChanged, Name: name, Old: diffCloneSegment(o), New: diffCloneSegment(n)})
		}
	}
	for _, name := range diffSegmentNames(newP.Segments) {
		if _, ok := oldSegs[name]; !ok {
			segments = append(segments, SegmentChange{Kind: ChangeAdded, Name: name, New: diffCloneSegment(newSegs[name])})
		}
	}
	return rules, segments, modeChange
}

// NewlyDenied returns, in input order, the flows that get through a node
// enforcing oldP but not one enforcing newP: e.g. the live inbound flows
// from conntrack that applying newP would cut.
//
// A flow gets through a policy when one of its rules allows it (segments
// as in Observed: from the tags when set, so a changed selector counts) or
// the policy is in audit mode; nil (no policy) lets nothing through. A flow
// marked Audited was seen passing although no rule allowed it, so it counts
// as getting through oldP whatever oldP says: callers mark the flows their
// flow log holds as audited. Consequences: a switch from audit to enforce
// newly denies every flow newP's rules do not allow; a switch to audit
// newly denies nothing; a flow seen denied (dropped) is never newly denied
// unless oldP's rules allow it.
func NewlyDenied(oldP, newP *Policy, flows []Observed) []Observed {
	var out []Observed
	for i := range flows {
		f := &flows[i]
		if (f.Audited || oldP.passes(f)) && !newP.passes(f) {
			out = append(out, *f)
		}
	}
	return out
}

// diffModeOf is p's mode, enforce when unset.
func diffModeOf(p *Policy) Mode {
	if p.Mode == "" {
		return ModeEnforce
	}
	return p.Mode
}

// diffSameRule reports whether two rules allow the same flows between the same
// segments (names and positions aside).
func diffSameRule(a, b *Rule) bool {
	return diffSameNames(a.From, b.From) && diffSameNames(a.To, b.To) && diffSamePorts(a.Ports, b.Ports)
}

func diffSameNames(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// diffSamePorts compares two ports lists as sets of flows (malformed entries
// ignored).
func diffSamePorts(a, b []Port) bool {
	sa, sb := &allowSet{}, &allowSet{}
	sa.add(a)
	sb.add(b)
	sa.normalize()
	sb.normalize()
	return slices.Equal(sa.ports(), sb.ports())
}

func diffRulesByName(rs []Rule) map[string]*Rule {
	out := map[string]*Rule{}
	for i := range rs {
		if _, dup := out[rs[i].Name]; !dup {
			out[rs[i].Name] = &rs[i]
		}
	}
	return out
}

// diffRuleNames lists the rule names in file order, each once.
func diffRuleNames(rs []Rule) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range rs {
		if !seen[x.Name] {
			seen[x.Name] = true
			out = append(out, x.Name)
		}
	}
	return out
}

func diffSegmentsByName(ss []Segment) map[string]*Segment {
	out := map[string]*Segment{}
	for i := range ss {
		if _, dup := out[ss[i].Name]; !dup {
			out[ss[i].Name] = &ss[i]
		}
	}
	return out
}

// diffSegmentNames lists the segment names in file order, each once.
func diffSegmentNames(ss []Segment) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range ss {
		if !seen[x.Name] {
			seen[x.Name] = true
			out = append(out, x.Name)
		}
	}
	return out
}

func diffCloneRule(r *Rule) *Rule {
	c := *r
	c.From, c.To, c.Ports = slices.Clone(r.From), slices.Clone(r.To), slices.Clone(r.Ports)
	c.Entries = slices.Clone(r.Entries)
	for i := range c.Entries {
		c.Entries[i].Ports = slices.Clone(c.Entries[i].Ports)
	}
	return &c
}

func diffCloneSegment(s *Segment) *Segment {
	c := *s
	c.Selector = maps.Clone(s.Selector)
	c.Terms = slices.Clone(s.Terms)
	for i := range c.Terms {
		c.Terms[i].Values = slices.Clone(c.Terms[i].Values)
	}
	return &c
}
