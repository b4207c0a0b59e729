package acl

import "slices"

// Cell is one entry of a policy's segment × segment matrix: what a node in
// segment From may reach on a node in segment To.
type Cell struct {
	From, To string
	// Ports is the union of the allowing rules' ports, normalized: ["any"]
	// alone when a rule allows everything; otherwise tcp ranges, then udp
	// ranges (each sorted, overlapping and adjacent ranges merged), then
	// icmp. Empty when nothing is allowed.
	Ports []Port
	// Rules names the allowing rules in file order.
	Rules []string
}

// PortStrings gives Ports in policy-file form ("tcp/80", "icmp", "any");
// never nil, so it encodes as a JSON list.
func (c Cell) PortStrings() []string {
	out := make([]string, 0, len(c.Ports))
	for _, pt := range c.Ports {
		out = append(out, pt.String())
	}
	return out
}

// Matrix returns the policy's segment × segment matrix: one cell for every
// (row, column) pair, rows outer, including pairs nothing is allowed
// between. Rows and columns are the segments in file order followed by "*"
// — a row "*" when some rule's from holds "*", a column "*" when some rule's
// to holds "*".
//
// A cell is evaluated as a policy test is (see RunTests): its source is a
// node whose only segment is From, its destination a node whose only
// segment is To, and "*" stands for an admitted node in no segment. So a
// rule "from: [*]" shows in every row, and a rule "to: [*]" in every
// column. What a node in several segments may reach on a node in several
// segments is the union of the cells of all their pairs (the "*" row or
// column for a node in none).
//
// Malformed ports of hand-built policies are ignored, and a rule without a
// valid port allows nothing. A nil policy has no matrix (nil).
func (p *Policy) Matrix() []Cell {
	if p == nil {
		return nil
	}
	var names []string
	for _, s := range p.Segments {
		if !slices.Contains(names, s.Name) {
			names = append(names, s.Name)
		}
	}
	rows, cols := slices.Clone(names), slices.Clone(names)
	for _, r := range p.Rules {
		if slices.Contains(r.From, Wildcard) && !slices.Contains(rows, Wildcard) {
			rows = append(rows, Wildcard)
		}
		if slices.Contains(r.To, Wildcard) && !slices.Contains(cols, Wildcard) {
			cols = append(cols, Wildcard)
		}
	}
	out := make([]Cell, 0, len(rows)*len(cols))
	for _, from := range rows {
		for _, to := range cols {
			out = append(out, p.cell(from, to))
		}
	}
	return out
}

// cell evaluates one matrix cell.
func (p *Policy) cell(from, to string) Cell {
	c := Cell{From: from, To: to}
	fromSegs, toSegs := testSegments(from), testSegments(to)
	set := &allowSet{}
	for i := range p.Rules {
		r := &p.Rules[i]
		if !listAdmits(r.From, fromSegs) || !listAdmits(r.To, toSegs) {
			continue
		}
		if set.add(r.Ports) {
			c.Rules = append(c.Rules, r.Name)
		}
	}
	set.normalize()
	c.Ports = set.ports()
	return c
}

// add puts the valid entries of ports into s (which is then no longer
// normalized) and reports whether there was any.
func (s *allowSet) add(ports []Port) bool {
	added := false
	for _, pt := range ports {
		if !pt.valid() {
			continue
		}
		added = true
		switch pt.Proto {
		case protoNameAny:
			s.any = true
		case protoNameICMP:
			s.icmp = true
		case protoNameTCP:
			s.tcp = append(s.tcp, allowRange{pt.Lo, pt.Hi})
		case protoNameUDP:
			s.udp = append(s.udp, allowRange{pt.Lo, pt.Hi})
		}
	}
	return added
}

// ports lists a normalized set as policy ports: any alone, else tcp, udp,
// icmp. Empty sets give nil.
func (s *allowSet) ports() []Port {
	if s.any {
		return []Port{{Proto: protoNameAny}}
	}
	var out []Port
	for _, r := range s.tcp {
		out = append(out, Port{Proto: protoNameTCP, Lo: r.lo, Hi: r.hi})
	}
	for _, r := range s.udp {
		out = append(out, Port{Proto: protoNameUDP, Lo: r.lo, Hi: r.hi})
	}
	if s.icmp {
		out = append(out, Port{Proto: protoNameICMP})
	}
	return out
}
