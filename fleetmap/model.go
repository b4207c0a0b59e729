package fleetmap

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Verdicts of an Edge.
const (
	VerdictAllowed = "allowed"
	VerdictDenied  = "denied"
	VerdictAudited = "audited"
)

// Unknown is the segment name for a source in no segment.
const Unknown = "unknown"

// Segment is one box of the map: a segment and how many nodes it has.
type Segment struct {
	Name    string `json:"name"`
	Members int    `json:"members"`
}

// Edge is the observed traffic from segment From to segment To with one
// verdict: the ports seen and the number of connections.
type Edge struct {
	From        string   `json:"from"` // segment name; Unknown for a source in no segment
	To          string   `json:"to"`
	Verdict     string   `json:"verdict"` // allowed | denied | audited
	Ports       []string `json:"ports"`   // "tcp/5432", "udp/53", "icmp"
	Connections uint64   `json:"connections"`
}

// Rule is a policy rule as one segment pair ("*" is kept as a name of its
// own). A rule with several From or To segments is several Rules with the
// same Name.
type Rule struct {
	Name  string   `json:"name"`
	From  string   `json:"from"`
	To    string   `json:"to"`
	Ports []string `json:"ports"`
}

// Missing is a node that did not answer in fleet mode, and why.
type Missing struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// Map is the application dependency map. The renderers work on a
// normalized copy (see Normalize); the caller may fill it in any order, with
// duplicates.
type Map struct {
	Segments []Segment `json:"segments"`
	Edges    []Edge    `json:"edges"`
	Unused   []Rule    `json:"unused"`  // rules no observed allowed edge used: drawn dashed
	Missing  []Missing `json:"missing"` // nodes that did not answer (fleet mode)
	// Since is the observation window; 0 means all kept observations.
	Since time.Duration `json:"-"`
}

// Normalize returns a copy of m in canonical form, the one every renderer
// draws:
//
//   - An edge's empty From or To is Unknown.
//   - Segments sorted by name, one per name (the largest Members kept); every
//     segment an edge or rule names is present, an implied one with Members 0.
//   - Verdict aliases mapped ("allow" → "allowed", "deny"/"drop" → "denied",
//     "audit" → "audited"); edges of one (From, To, Verdict) merged: ports
//     united, connections summed. Edges sorted by From, To, then verdict
//     (allowed, audited, denied, others by name).
//   - Ports sorted (protocol tcp, udp, icmp, others by name, then numerically
//     by port) and deduplicated, never nil.
//   - Unused sorted by From, To, Name and deduplicated; Missing sorted by
//     Node, one per node; both never nil.
func (m Map) Normalize() Map {
	n := Map{Since: m.Since}
	seg := map[string]int{}
	for _, s := range m.Segments {
		if v, ok := seg[s.Name]; !ok || s.Members > v {
			seg[s.Name] = s.Members
		}
	}
	imply := func(name string) {
		if _, ok := seg[name]; !ok {
			seg[name] = 0
		}
	}

	type ekey struct{ from, to, verdict string }
	edges := map[ekey]*Edge{}
	for _, e := range m.Edges {
		k := ekey{cmp.Or(e.From, Unknown), cmp.Or(e.To, Unknown), canonVerdict(e.Verdict)}
		imply(k.from)
		imply(k.to)
		if x, ok := edges[k]; ok {
			x.Ports = append(x.Ports, e.Ports...)
			x.Connections += e.Connections
			continue
		}
		edges[k] = &Edge{From: k.from, To: k.to, Verdict: k.verdict, Ports: slices.Clone(e.Ports), Connections: e.Connections}
	}
	n.Edges = make([]Edge, 0, len(edges))
	for _, e := range edges {
		e.Ports = normPorts(e.Ports)
		n.Edges = append(n.Edges, *e)
	}
	slices.SortFunc(n.Edges, compareEdges)

	n.Unused = make([]Rule, 0, len(m.Unused))
	for _, r := range m.Unused {
		imply(r.From)
		imply(r.To)
		n.Unused = append(n.Unused, Rule{Name: r.Name, From: r.From, To: r.To, Ports: normPorts(slices.Clone(r.Ports))})
	}
	slices.SortFunc(n.Unused, compareRules)
	n.Unused = slices.CompactFunc(n.Unused, func(a, b Rule) bool { return compareRules(a, b) == 0 })

	n.Segments = make([]Segment, 0, len(seg))
	for name, members := range seg {
		n.Segments = append(n.Segments, Segment{Name: name, Members: members})
	}
	slices.SortFunc(n.Segments, func(a, b Segment) int { return strings.Compare(a.Name, b.Name) })

	n.Missing = slices.Clone(m.Missing)
	if n.Missing == nil {
		n.Missing = []Missing{}
	}
	slices.SortStableFunc(n.Missing, func(a, b Missing) int { return strings.Compare(a.Node, b.Node) })
	n.Missing = slices.CompactFunc(n.Missing, func(a, b Missing) bool { return a.Node == b.Node })
	return n
}

// implied reports the segments of a normalized map that only edges or rules
// name (not in the caller's Segments).
func implied(orig, norm Map) map[string]bool {
	declared := map[string]bool{}
	for _, s := range orig.Segments {
		declared[s.Name] = true
	}
	out := map[string]bool{}
	for _, s := range norm.Segments {
		if !declared[s.Name] {
			out[s.Name] = true
		}
	}
	return out
}

func canonVerdict(v string) string {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "allowed", "allow", "accept", "accepted":
		return VerdictAllowed
	case "denied", "deny", "drop", "dropped":
		return VerdictDenied
	case "audited", "audit":
		return VerdictAudited
	}
	return v
}

func verdictRank(v string) int {
	switch v {
	case VerdictAllowed:
		return 0
	case VerdictAudited:
		return 1
	case VerdictDenied:
		return 2
	}
	return 3
}

func compareVerdicts(a, b string) int {
	return cmp.Or(cmp.Compare(verdictRank(a), verdictRank(b)), strings.Compare(a, b))
}

func compareEdges(a, b Edge) int {
	return cmp.Or(strings.Compare(a.From, b.From), strings.Compare(a.To, b.To), compareVerdicts(a.Verdict, b.Verdict))
}

func compareRules(a, b Rule) int {
	return cmp.Or(strings.Compare(a.From, b.From), strings.Compare(a.To, b.To), strings.Compare(a.Name, b.Name),
		slices.Compare(a.Ports, b.Ports))
}

func protoRank(p string) int {
	switch p {
	case "tcp":
		return 0
	case "udp":
		return 1
	case "icmp":
		return 2
	case "icmpv6":
		return 3
	case "any":
		return 5
	}
	return 4
}

// comparePorts orders "proto/N" strings by protocol, then numerically by
// the (first) port, then as strings.
func comparePorts(a, b string) int {
	pa, ra, _ := strings.Cut(a, "/")
	pb, rb, _ := strings.Cut(b, "/")
	if c := cmp.Or(cmp.Compare(protoRank(pa), protoRank(pb)), strings.Compare(pa, pb)); c != 0 {
		return c
	}
	na, ea := leadingNumber(ra)
	nb, eb := leadingNumber(rb)
	if ea && eb && na != nb {
		return cmp.Compare(na, nb)
	}
	return strings.Compare(a, b)
}

func leadingNumber(s string) (int, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.Atoi(s[:i])
	return n, err == nil
}

func normPorts(p []string) []string {
	out := make([]string, 0, len(p))
	for _, s := range p {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, comparePorts)
	return slices.Compact(out)
}

// edgeLabel is "verdict: ports, N conn" (ports elided past max when max > 0).
func edgeLabel(e Edge, max int) string {
	var b strings.Builder
	b.WriteString(e.Verdict)
	b.WriteString(": ")
	if len(e.Ports) > 0 {
		b.WriteString(portList(e.Ports, max))
		b.WriteString(", ")
	}
	b.WriteString(strconv.FormatUint(e.Connections, 10))
	b.WriteString(" conn")
	return b.String()
}

// ruleLabel is "unused NAME: ports".
func ruleLabel(r Rule, max int) string {
	s := "unused"
	if r.Name != "" {
		s += " " + r.Name
	}
	if len(r.Ports) > 0 {
		s += ": " + portList(r.Ports, max)
	}
	return s
}

func portList(p []string, max int) string {
	if max > 0 && len(p) > max {
		return strings.Join(p[:max], " ") + " +" + strconv.Itoa(len(p)-max)
	}
	return strings.Join(p, " ")
}

func sinceText(d time.Duration) string {
	if d <= 0 {
		return "all kept observations"
	}
	return "last " + d.String()
}
