package acl

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The Suggest property test: on random policies and random observed flows,
// the policy plus Suggest's rules allows every placeable flow the policy
// denied, the rules allow nothing beyond the observed flows of their
// segment pair, flows already allowed add nothing, unplaceable flows are
// suggestJustified, and the policy's passing tests keep passing. Verdicts come
// from a brute-force evaluator written from the policy semantics.

// propObserved returns a random flow; Count is set to id to find it again.
func propObserved(r *rand.Rand, p *Policy, id int) Observed {
	names := []string{"ghost", Wildcard}
	for _, s := range p.Segments {
		names = append(names, s.Name, s.Name) // defined names more often
	}
	side := func() ([]string, map[string]string) {
		if r.Intn(4) == 0 {
			return nil, propTags(r)
		}
		var segs []string
		for range r.Intn(3) + r.Intn(2) {
			segs = append(segs, names[r.Intn(len(names))])
		}
		return segs, nil
	}
	f := Observed{SrcName: fmt.Sprintf("src-%d", id), DstName: fmt.Sprintf("dst-%d", id), Count: uint64(id)}
	f.SrcSegments, f.SrcTags = side()
	f.DstSegments, f.DstTags = side()
	switch n := r.Intn(20); {
	case n < 9:
		f.Proto = "tcp"
	case n < 14:
		f.Proto = "udp"
	case n < 16:
		f.Proto = "icmp"
	case n == 16:
		f.Proto = "icmpv6"
	case n == 17:
		f.Proto = "TCP"
	case n == 18:
		f.Proto = "17"
	default:
		f.Proto = "sctp"
	}
	if f.Proto != "icmp" && f.Proto != "icmpv6" {
		f.Port = uint16(1 + r.Intn(propMaxPort))
		if r.Intn(40) == 0 {
			f.Port = 0
		}
	}
	return f
}

// bruteProto maps an observed protocol to the ports-list name.
func bruteProto(proto string) string {
	switch strings.ToLower(proto) {
	case "tcp", "6":
		return "tcp"
	case "udp", "17":
		return "udp"
	case "icmp", "icmpv6", "1", "58":
		return "icmp"
	}
	return strings.ToLower(proto)
}

// bruteSegments: the defined segments a side of a flow is in.
func bruteSegments(p *Policy, names []string, tags map[string]string) map[string]bool {
	out := map[string]bool{}
	for _, s := range p.Segments {
		if tags != nil {
			if bruteInSegment(p, s.Name, tags) {
				out[s.Name] = true
			}
		} else if slices.Contains(names, s.Name) {
			out[s.Name] = true
		}
	}
	return out
}

func bruteListMeets(list []string, segs map[string]bool) bool {
	for _, n := range list {
		if n == Wildcard || segs[n] {
			return true
		}
	}
	return false
}

// bruteObservedAllowed: some rule of p allows f.
func bruteObservedAllowed(p *Policy, f Observed) bool {
	src := bruteSegments(p, f.SrcSegments, f.SrcTags)
	dst := bruteSegments(p, f.DstSegments, f.DstTags)
	pf := propFlow{proto: bruteProto(f.Proto), port: f.Port}
	for _, rule := range p.Rules {
		if !bruteListMeets(rule.From, src) || !bruteListMeets(rule.To, dst) {
			continue
		}
		for _, pt := range rule.Ports {
			if bruteAllows(pt, pf) {
				return true
			}
		}
	}
	return false
}

// propDenyTests adds tests expecting deny that p passes.
func propDenyTests(r *rand.Rand, p *Policy) {
	names := []string{Wildcard}
	for _, s := range p.Segments {
		names = append(names, s.Name)
	}
	for i := range r.Intn(4) {
		t := Test{From: names[r.Intn(len(names))], To: names[r.Intn(len(names))], Expect: "deny", Pos: Pos{Line: 100 + i, Col: 5}}
		if r.Intn(5) == 0 {
			t.Port = Port{Proto: "icmp"}
		} else {
			n := uint16(1 + r.Intn(propMaxPort))
			t.Port = Port{Proto: []string{"tcp", "udp"}[r.Intn(2)], Lo: n, Hi: n}
		}
		p.Tests = append(p.Tests, t)
		if len(p.RunTests()) > 0 {
			p.Tests = p.Tests[:len(p.Tests)-1]
		}
	}
}

func suggestSameSet(list []string, set map[string]bool) bool {
	if len(list) != len(set) {
		return false
	}
	for _, n := range list {
		if !set[n] {
			return false
		}
	}
	return true
}

func TestSuggestAllowsObservedFlows(t *testing.T) {
	r := rand.New(rand.NewSource(20240612))
	iterations := 1000
	if testing.Short() {
		iterations = 200
	}
	var placed, unplacedTotal, allowedTotal int
	for it := range iterations {
		p := propPolicy(r)
		propDenyTests(r, p)
		flows := make([]Observed, r.Intn(16))
		for i := range flows {
			flows[i] = propObserved(r, p, i+1)
		}
		rules, unplaced := Suggest(p, flows)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("iteration %d: %s\npolicy:\n%s\nflows: %+v\nrules: %+v\nunplaceable: %+v",
				it, fmt.Sprintf(format, args...), renderPolicy(p), flows, rules, unplaced)
		}

		content, err := p.WithRules(rules)
		if err != nil {
			fail("WithRules: %v", err)
		}
		p2, err := Parse("with-suggestions.yaml", content)
		if err != nil {
			fail("parse WithRules output: %v\n%s", err, content)
		}
		stripPositions(p2)
		want := *p
		want.Rules = append(slices.Clip(p.Rules), rules...)
		for i := len(p.Rules); i < len(want.Rules); i++ {
			r := &want.Rules[i]
			if r.Comment != "" && !strings.Contains(string(content), "  # "+r.Comment+"\n  - name: "+r.Name+"\n") {
				fail("WithRules content lacks the comment of %s:\n%s", r.Name, content)
			}
			r.Comment = "" // comments are not read back
		}
		want.Tests = nil
		for _, tc := range p.Tests {
			tc.Pos = Pos{}
			want.Tests = append(want.Tests, tc)
		}
		for i := range p2.Tests {
			p2.Tests[i].Pos = Pos{}
		}
		if !reflect.DeepEqual(p2, &want) {
			fail("WithRules content does not read back as policy + rules:\n%s\n%#v\n%#v", content, p2, &want)
		}
		if fails := p2.RunTests(); len(fails) > 0 {
			fail("a passing test fails with the suggestions: %v", fails)
		}

		unplacedByID := map[uint64]string{}
		for _, u := range unplaced {
			unplacedByID[u.Count] = u.Reason
		}
		anyDenied := false
		for _, f := range flows {
			reason, isUnplaced := unplacedByID[f.Count]
			switch {
			case bruteObservedAllowed(p, f):
				allowedTotal++
				if isUnplaced {
					fail("allowed flow %+v reported unplaceable: %s", f, reason)
				}
			case isUnplaced:
				anyDenied = true
				unplacedTotal++
				if !suggestJustified(p, f) {
					fail("flow %+v unplaceable without cause: %s", f, reason)
				}
			default:
				anyDenied = true
				placed++
				if !bruteObservedAllowed(p2, f) {
					fail("placeable flow %+v still denied with the suggestions", f)
				}
			}
		}
		if !anyDenied && len(rules) > 0 {
			fail("rules suggested although every flow is allowed")
		}

		// Rules allow only observed denied flows of their own segment pair.
		names := map[string]bool{}
		for _, rule := range p.Rules {
			names[rule.Name] = true
		}
		for _, rule := range rules {
			if names[rule.Name] {
				fail("rule name %q repeats", rule.Name)
			}
			names[rule.Name] = true
			seen := func(proto string, port uint16) bool {
				for _, f := range flows {
					if _, u := unplacedByID[f.Count]; u || bruteObservedAllowed(p, f) {
						continue
					}
					if !suggestSameSet(rule.From, bruteSegments(p, f.SrcSegments, f.SrcTags)) ||
						!suggestSameSet(rule.To, bruteSegments(p, f.DstSegments, f.DstTags)) {
						continue
					}
					if bruteProto(f.Proto) == proto && (proto == "icmp" || f.Port == port) {
						return true
					}
				}
				return false
			}
			for _, pt := range rule.Ports {
				switch pt.Proto {
				case "icmp":
					if !seen("icmp", 0) {
						fail("rule %q allows icmp, never observed denied", rule.Name)
					}
				case "tcp", "udp":
					for n := int(pt.Lo); n <= int(pt.Hi); n++ {
						if !seen(pt.Proto, uint16(n)) {
							fail("rule %q allows %s/%d, never observed denied", rule.Name, pt.Proto, n)
						}
					}
				default:
					fail("rule %q has port %v", rule.Name, pt)
				}
			}
		}

		// NewlyDenied: the suggestions cut nothing; removing them again
		// (both in enforce mode) cuts exactly the flows they let in (the
		// placed ones, and maybe unplaceable ones a broader rule covers).
		if got := NewlyDenied(p, p2, flows); len(got) != 0 {
			fail("NewlyDenied(p, p+suggestions) = %+v", got)
		}
		pe, p2e := *p, *p2
		pe.Mode, p2e.Mode = ModeEnforce, ModeEnforce
		var wantCut []Observed
		for _, f := range flows {
			if bruteObservedAllowed(p2, f) && !bruteObservedAllowed(p, f) {
				wantCut = append(wantCut, f)
			}
		}
		if got := NewlyDenied(&p2e, &pe, flows); !reflect.DeepEqual(got, wantCut) {
			fail("NewlyDenied(p+suggestions, p) = %+v, want %+v", got, wantCut)
		}
	}
	t.Logf("%d placed, %d unplaceable, %d allowed flows", placed, unplacedTotal, allowedTotal)
	// The generator must exercise every branch.
	if placed < iterations || unplacedTotal < iterations/4 || allowedTotal < iterations/4 {
		t.Errorf("weak generator: %d placed, %d unplaceable, %d allowed flows", placed, unplacedTotal, allowedTotal)
	}
}

// suggestJustified reports whether a denied flow really cannot get a rule.
func suggestJustified(p *Policy, f Observed) bool {
	src := bruteSegments(p, f.SrcSegments, f.SrcTags)
	dst := bruteSegments(p, f.DstSegments, f.DstTags)
	proto := bruteProto(f.Proto)
	if len(src) == 0 || len(dst) == 0 || (proto != "tcp" && proto != "udp" && proto != "icmp") {
		return true
	}
	if proto != "icmp" && f.Port == 0 {
		return true
	}
	for _, tc := range p.Tests {
		if tc.Expect == "deny" && src[tc.From] && dst[tc.To] && tc.Port.Proto == proto && (proto == "icmp" || tc.Port.Lo == f.Port) {
			return true
		}
	}
	return false
}
