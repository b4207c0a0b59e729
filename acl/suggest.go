package acl

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Unplaceable is an observed flow Suggest wrote no rule for, and why.
type Unplaceable struct {
	Observed
	Reason string
}

// Suggest returns rules that, appended to p, allow every observed flow that
// p does not allow (denied flows, and audited ones: what p's rules allow is
// what counts, not the verdict the node logged), plus the flows it cannot
// write a rule for. Flows p already allows produce nothing.
//
// Each flow is placed by its segments under p (see Observed). Flows are
// grouped by (source segment set, destination segment set), and each group
// gets one rule from the source's segments to the destination's segments
// (in p's file order; a rule admits a node in any of its from segments, so
// for a node in several segments the rule is broader than needed and may
// be narrowed by hand). Its ports are exactly the observed ones: tcp ports,
// then udp ports, then icmp, consecutive observed ports merged into a range
// (tcp/80, tcp/81 give tcp/80-81; tcp/80, tcp/82 stay apart). Rules are
// named "suggested-<from>-to-<to>", several segments joined by "+", with
// "-2", "-3", ... appended when the name is taken (by p or by an earlier
// suggestion); they come sorted by their from and then to segments, in p's
// file order. Positions are zero.
//
// A flow not marked Audited was denied (enforce mode: dropped), so a rule
// for it would let through traffic nobody has seen work: such a rule gets
// the Comment DeniedComment ("from denied flows (enforce mode): check they
// are wanted"), or, when only some of its ports come from denied flows,
// those ports in front ("tcp/22 from denied flows ..."). Rules only from
// audited flows have no comment.
//
// A flow is unplaceable, and returned with the reason in input order, when
// its source or its destination is in no segment of p (a rule would need
// "*", which is never suggested: give the node tags or define a segment
// first), when its protocol is neither tcp, udp nor icmp (only "any" would
// allow it), when it is tcp or udp to port 0, or when one of p's tests
// expects exactly that flow to be denied (so the suggested rules never make
// a passing test fail).
//
// The output depends only on p and the set of flows, not on their order
// (except the order of the unplaceable list). A nil p is a policy without
// segments: every flow it is given is unplaceable.
func Suggest(p *Policy, flows []Observed) (rules []Rule, unplaceable []Unplaceable) {
	groups := map[string]*suggestGroup{}
	for i := range flows {
		f := &flows[i]
		if p.allowsObserved(f) {
			continue
		}
		src, dst := f.segmentsUnder(p)
		proto := f.flowProto()
		if reason := p.unplaceable(f, src, dst, proto); reason != "" {
			unplaceable = append(unplaceable, Unplaceable{Observed: *f, Reason: reason})
			continue
		}
		key := strings.Join(src, "\x00") + "\x01" + strings.Join(dst, "\x00")
		g := groups[key]
		if g == nil {
			g = &suggestGroup{from: src, to: dst, all: newPortSet(), denied: newPortSet()}
			groups[key] = g
		}
		g.all.add(proto, f.Port)
		if !f.Audited {
			g.denied.add(proto, f.Port)
		}
	}
	if len(groups) == 0 {
		return nil, unplaceable
	}

	order := map[string]int{}
	for i, s := range p.Segments {
		if _, ok := order[s.Name]; !ok {
			order[s.Name] = i
		}
	}
	indexes := func(names []string) []int {
		out := make([]int, len(names))
		for i, n := range names {
			out[i] = order[n]
		}
		return out
	}
	sorted := make([]*suggestGroup, 0, len(groups))
	for _, g := range groups {
		sorted = append(sorted, g)
	}
	slices.SortFunc(sorted, func(a, b *suggestGroup) int {
		if c := slices.Compare(indexes(a.from), indexes(b.from)); c != 0 {
			return c
		}
		return slices.Compare(indexes(a.to), indexes(b.to))
	})

	taken := map[string]bool{}
	for _, r := range p.Rules {
		taken[r.Name] = true
	}
	for _, g := range sorted {
		base := "suggested-" + strings.Join(g.from, "+") + "-to-" + strings.Join(g.to, "+")
		name := base
		for n := 2; taken[name]; n++ {
			name = base + "-" + strconv.Itoa(n)
		}
		taken[name] = true
		rules = append(rules, Rule{Name: name, From: g.from, To: g.to, Ports: g.all.ports(), Comment: g.comment()})
	}
	return rules, unplaceable
}

// DeniedComment is the comment of a suggested rule from denied flows only.
const DeniedComment = "from denied flows (enforce mode): check they are wanted"

// suggestGroup gathers the flows no rule allows between one pair of
// segment sets: all their ports, and those of the denied (not audited) ones.
type suggestGroup struct {
	from, to    []string
	all, denied portSet
}

// comment labels the group's rule when denied flows are in it.
func (g *suggestGroup) comment() string {
	denied := g.denied.ports()
	switch {
	case len(denied) == 0:
		return ""
	case g.denied.equal(g.all):
		return DeniedComment
	}
	return strings.Join(portStrings(denied), ", ") + " " + DeniedComment
}

// portSet is a set of observed tcp and udp ports and icmp.
type portSet struct {
	tcp, udp map[uint16]bool
	icmp     bool
}

func newPortSet() portSet { return portSet{tcp: map[uint16]bool{}, udp: map[uint16]bool{}} }

func (s *portSet) add(proto string, port uint16) {
	switch proto {
	case protoNameTCP:
		s.tcp[port] = true
	case protoNameUDP:
		s.udp[port] = true
	case protoNameICMP:
		s.icmp = true
	}
}

func (s *portSet) equal(o portSet) bool {
	return s.icmp == o.icmp && maps.Equal(s.tcp, o.tcp) && maps.Equal(s.udp, o.udp)
}

// ports lists the set's ports: tcp, udp, icmp.
func (s *portSet) ports() []Port {
	out := observedRanges(protoNameTCP, s.tcp)
	out = append(out, observedRanges(protoNameUDP, s.udp)...)
	if s.icmp {
		out = append(out, Port{Proto: protoNameICMP})
	}
	return out
}

// observedRanges lists the ports in set, sorted, runs of consecutive ports
// merged into ranges (so a range holds only observed ports).
func observedRanges(proto string, set map[uint16]bool) []Port {
	nums := make([]uint16, 0, len(set))
	for n := range set {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	var out []Port
	for _, n := range nums {
		if k := len(out) - 1; k >= 0 && int(out[k].Hi)+1 == int(n) {
			out[k].Hi = n
			continue
		}
		out = append(out, Port{Proto: proto, Lo: n, Hi: n})
	}
	return out
}

// unplaceable says why no rule can be suggested for flow f (placed in
// segments src → dst, protocol proto), or "" when one can.
func (p *Policy) unplaceable(f *Observed, src, dst []string, proto string) string {
	switch {
	case len(src) == 0:
		return fmt.Sprintf("source %s is in no segment: add tags or segments first", observedNodeLabel(f.SrcName))
	case len(dst) == 0:
		return fmt.Sprintf("destination %s is in no segment: add tags or segments first", observedNodeLabel(f.DstName))
	case proto != protoNameTCP && proto != protoNameUDP && proto != protoNameICMP:
		return fmt.Sprintf("protocol %q can only be allowed by \"any\": write such a rule by hand if you mean it", f.Proto)
	case proto != protoNameICMP && f.Port == 0:
		return fmt.Sprintf("%s port 0 cannot be allowed by a policy", proto)
	}
	for _, t := range p.Tests {
		if t.Expect == "deny" && slices.Contains(src, t.From) && slices.Contains(dst, t.To) && t.Port.Matches(proto, f.Port) {
			where := "a policy test"
			if t.Pos.Line > 0 {
				where = fmt.Sprintf("the policy test at line %d", t.Pos.Line)
			}
			return fmt.Sprintf("%s expects %s -> %s %s to be denied", where, t.From, t.To, t.Port)
		}
	}
	return ""
}

// observedNodeLabel names a node in messages.
func observedNodeLabel(name string) string {
	if name == "" {
		return "(unknown node)"
	}
	return name
}
