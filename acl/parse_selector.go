package acl

import (
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// selector reads the selector mapping of segment seg (n is its value) into
// seg.Selector and seg.Terms, and reports terms that contradict each other.
func (ps *parser) selector(seg *Segment, n *yaml.Node) {
	what := "the selector of segment " + strconv.Quote(seg.Name)
	pairs := ps.pairs(n, what)
	if n.Kind == yaml.MappingNode && len(n.Content) == 0 {
		ps.nodeErrorf(n, "segment %q has an empty selector (it would match no node); give at least one tag, e.g. {role: web}", seg.Name)
	}
	negated := map[string]*yaml.Node{} // tag key -> the "!key" key node
	for _, sp := range pairs {
		key, not := strings.CutPrefix(sp.name, SelectorNot)
		if not && key == "" {
			ps.nodeErrorf(sp.key, "selector key %q names no tag (write \"!TAG\", e.g. \"!canary\": \"*\")", sp.name)
			continue
		}
		label := "tag " + strconv.Quote(sp.name) + " in " + what
		t, ok := ps.selectorTerm(sp, key, not, label)
		if !ok {
			continue
		}
		if not {
			negated[key] = sp.key
		}
		if !not && len(t.Values) == 1 && sp.val.Kind == yaml.ScalarNode {
			seg.Selector[key] = t.Values[0]
			continue
		}
		seg.Terms = append(seg.Terms, t)
	}
	slices.SortStableFunc(seg.Terms, func(a, b Term) int { return strings.Compare(a.Key, b.Key) })
	ps.contradictions(seg, negated)
}

// selectorTerm reads the value of one selector pair: a string, "*" or a
// non-empty list of strings (without "*").
func (ps *parser) selectorTerm(sp yamlPair, key string, not bool, label string) (Term, bool) {
	t := Term{Key: key, Not: not, Pos: posOf(sp.key)}
	v := sp.val
	switch {
	case not && (isNull(v) || (v.Kind == yaml.ScalarNode && v.Value == "" && v.ShortTag() == "!!str")):
		ps.nodeErrorf(v, "%q has an empty value: write \"*\" (tag absent), a value or a list of values", sp.name)
		return t, false
	case v.Kind == yaml.SequenceNode:
		if len(v.Content) == 0 {
			ps.nodeErrorf(v, "%s is an empty list (it would match no node); give at least one value, or \"*\"", label)
			return t, false
		}
		ok := true
		for _, item := range v.Content {
			item = yamlResolve(item)
			if item == nil {
				continue
			}
			s, isStr := ps.str(item, "a value of "+label)
			switch {
			case !isStr:
				ok = false
			case s == Wildcard:
				ps.nodeErrorf(item, "%q in a list of values: write %s: \"*\" for any value", Wildcard, strconv.Quote(sp.name))
				ok = false
			case not && s == "":
				ps.nodeErrorf(item, "%q has an empty value in its list", sp.name)
				ok = false
			default:
				t.Values = append(t.Values, s)
			}
		}
		if !ok || len(t.Values) == 0 {
			return t, false
		}
		slices.Sort(t.Values)
		t.Values = slices.Compact(t.Values)
		return t, true
	}
	s, ok := ps.str(v, label)
	if !ok {
		return t, false
	}
	if s != Wildcard {
		t.Values = []string{s}
	}
	return t, true
}

// contradictions reports, at the "!key" key, each tag whose plain and
// negated terms no node can meet together.
func (ps *parser) contradictions(seg *Segment, negated map[string]*yaml.Node) {
	for key, at := range negated {
		var plain, not *Term
		if v, ok := seg.Selector[key]; ok {
			plain = &Term{Key: key, Values: []string{v}, pair: true}
		}
		for i := range seg.Terms {
			switch t := &seg.Terms[i]; {
			case t.Key != key:
			case t.Not:
				not = t
			default:
				plain = t
			}
		}
		if why := contradiction(plain, not); why != "" {
			ps.nodeErrorf(at, "segment %q can never match: {%s, %s} %s", seg.Name, plain, not, why)
		}
	}
}
