package fleetmap

import (
	"strconv"
	"strings"
)

// Observation is one observed flow aggregate as the map needs it: the
// segments of its source and of its destination (none: Unknown), its
// verdict, its destination port ("tcp/5432", "udp/53", "icmp") and its
// connection count.
type Observation struct {
	From, To    []string
	Verdict     string
	Port        string
	Connections uint64
}

// Build makes a map from the fleet's segments, its observations and the
// policy's rules (as segment pairs): one edge per source segment,
// destination segment and verdict (an observation between nodes in several
// segments counts in every pair of them), and as Unused the rules that no
// allowed edge used (see UnusedRules). Missing and Since are left to the
// caller. Build over the whole fleet's observations: a rule unused on one
// node may be used on another.
//
// The result is normalized except for Segments, which holds only the
// given segments (sorted, one per name): the segments that only edges or
// rules name (Unknown, "*") are left for the renderers' Normalize to add,
// so that they still draw them as implied (no member count).
func Build(segments []Segment, obs []Observation, rules []Rule) Map {
	m := Map{Segments: segments}
	for _, o := range obs {
		from, to := o.From, o.To
		if len(from) == 0 {
			from = []string{Unknown}
		}
		if len(to) == 0 {
			to = []string{Unknown}
		}
		var ports []string
		if o.Port != "" {
			ports = []string{o.Port}
		}
		for _, f := range from {
			for _, t := range to {
				m.Edges = append(m.Edges, Edge{From: f, To: t, Verdict: o.Verdict, Ports: ports, Connections: o.Connections})
			}
		}
	}
	m = m.Normalize()
	m.Unused = UnusedRules(rules, m.Edges)
	m = m.Normalize()
	m.Segments = Map{Segments: segments}.Normalize().Segments
	return m
}

// UnusedRules returns the rules that no allowed edge used: a rule is used
// when an edge with verdict allowed goes from its From (or any segment, for
// "*") to its To (or any, for "*") on one of its ports. Rule ports are the
// policy's: "tcp/PORT", "tcp/LO-HI", "udp/...", "icmp" (which covers icmp
// and icmpv6) and "any"; a rule without ports covers every port.
func UnusedRules(rules []Rule, edges []Edge) []Rule {
	out := []Rule{}
	for _, r := range rules {
		used := false
		for _, e := range edges {
			if canonVerdict(e.Verdict) != VerdictAllowed ||
				(r.From != "*" && r.From != e.From) || (r.To != "*" && r.To != e.To) {
				continue
			}
			if portsMeet(r.Ports, e.Ports) {
				used = true
				break
			}
		}
		if !used {
			out = append(out, r)
		}
	}
	return out
}

func portsMeet(rule, seen []string) bool {
	if len(rule) == 0 {
		return true
	}
	for _, rp := range rule {
		if rp == "any" {
			return true
		}
		for _, sp := range seen {
			if portCovers(rp, sp) {
				return true
			}
		}
	}
	return false
}

// portCovers reports whether rule port rp admits observed port sp.
func portCovers(rp, sp string) bool {
	rproto, rrange, rhas := strings.Cut(rp, "/")
	sproto, sport, shas := strings.Cut(sp, "/")
	if rproto == "icmp" && !rhas {
		return (sproto == "icmp" || sproto == "icmpv6") && !shas
	}
	if !rhas || !shas || rproto != sproto {
		return rp == sp
	}
	if rrange == "any" {
		return true
	}
	lo, hi, isRange := strings.Cut(rrange, "-")
	if !isRange {
		hi = lo
	}
	l, err1 := strconv.Atoi(lo)
	h, err2 := strconv.Atoi(hi)
	p, err3 := strconv.Atoi(sport)
	if err1 != nil || err2 != nil || err3 != nil {
		return rrange == sport
	}
	return l <= p && p <= h
}
