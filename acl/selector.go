package acl

import (
	"slices"
	"strconv"
	"strings"
)

// SelectorNot prefixes a selector key to negate its term: "!canary": "*"
// means the tag canary is absent.
const SelectorNot = "!"

// Term is one term of a segment selector other than a plain key: value
// pair (those are in Segment.Selector). A node matches a term:
//
//	Not  Values  written                 matches a node whose tag Key
//	no   nil     key: "*"                is present (any value)
//	no   [a b]   key: [a, b]             is present and one of a, b
//	yes  nil     "!key": "*"             is absent
//	yes  [a b]   "!key": a / [a, b]      is absent, or present and none of a, b
//
// So a negated value list also matches a node without the tag: "!env": prod
// selects every node that is not tagged env=prod.
type Term struct {
	Key    string
	Not    bool
	Values []string // sorted, no repeats; nil means "*"
	Pos    Pos

	pair bool // a Segment.Selector pair seen as a term (written key: value)
}

// matches reports whether a node with tags meets t.
func (t *Term) matches(tags map[string]string) bool {
	v, present := tags[t.Key]
	in := present && (t.Values == nil || slices.Contains(t.Values, v))
	if t.Not {
		return !in
	}
	return in
}

// String gives the policy-file form, e.g. `env: [prod, staging]`,
// `team: "*"`, `"!canary": "*"`, `"!env": prod`.
func (t *Term) String() string {
	key := t.Key
	if t.Not {
		key = strconv.Quote(SelectorNot + t.Key)
	}
	return key + ": " + t.valueString()
}

// valueString gives the term's value as written: "*" quoted, one negated
// value bare, otherwise a flow list.
func (t *Term) valueString() string {
	switch {
	case t.Values == nil:
		return `"*"`
	case (t.Not || t.pair) && len(t.Values) == 1:
		return t.Values[0]
	}
	return "[" + strings.Join(t.Values, ", ") + "]"
}

func (t *Term) equal(o *Term) bool {
	return t.Key == o.Key && t.Not == o.Not && (t.Values == nil) == (o.Values == nil) && slices.Equal(t.Values, o.Values)
}

// allTerms returns every term of s in key order (for the same key, the
// plain term before the negated one): its key: value pairs as one-value
// terms, then merged with its Terms.
func (s *Segment) allTerms() []Term {
	out := make([]Term, 0, len(s.Selector)+len(s.Terms))
	for k, v := range s.Selector {
		out = append(out, Term{Key: k, Values: []string{v}, pair: true})
	}
	out = append(out, s.Terms...)
	slices.SortStableFunc(out, func(a, b Term) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		switch {
		case a.Not == b.Not:
			return 0
		case b.Not:
			return -1
		}
		return 1
	})
	return out
}

// SelectorMap gives s's selector as a map of key (negated keys with their
// "!") to the value as written: "web", "[prod, staging]", "*". It is for
// display (status, the segments API).
func (s *Segment) SelectorMap() map[string]string {
	out := make(map[string]string, len(s.Selector)+len(s.Terms))
	for k, v := range s.Selector {
		out[k] = v
	}
	for i := range s.Terms {
		t := &s.Terms[i]
		key := t.Key
		if t.Not {
			key = SelectorNot + key
		}
		v := t.valueString()
		if t.Values == nil {
			v = Wildcard
		}
		out[key] = v
	}
	return out
}

// SelectorString gives s's selector in policy-file flow syntax with keys
// sorted, e.g. `{env: [prod, staging], role: db}`.
func (s *Segment) SelectorString() string {
	terms := s.allTerms()
	parts := make([]string, len(terms))
	for i := range terms {
		parts[i] = terms[i].String()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// sameSelector reports whether two segments select by the same terms.
func sameSelector(a, b *Segment) bool {
	ta, tb := a.allTerms(), b.allTerms()
	return slices.EqualFunc(ta, tb, func(x, y Term) bool { return x.equal(&y) })
}

// contradiction says why the terms of one key can never all hold ("" when
// some node could meet them). plain and not are the key's plain and negated
// terms (either may be nil).
func contradiction(plain, not *Term) string {
	if plain == nil || not == nil {
		return ""
	}
	switch {
	case not.Values == nil:
		return "requires tag " + strconv.Quote(plain.Key) + " and its absence"
	case plain.Values == nil:
		return "" // present with a value outside the negated list
	}
	for _, v := range plain.Values {
		if !slices.Contains(not.Values, v) {
			return ""
		}
	}
	return "excludes every value it allows for tag " + strconv.Quote(plain.Key)
}
