package acl

import (
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// policy walks the root node of a policy file.
func (ps *parser) policy(root *yaml.Node) *Policy {
	root = yamlResolve(root)
	if root == nil {
		return nil
	}
	top := ps.fields(root, "the policy", "mode", "services", "segments", "rules", "tests")
	pol := &Policy{Mode: ModeEnforce}
	if f, ok := top["mode"]; ok {
		if s, ok := ps.str(f.val, "mode"); ok {
			switch Mode(s) {
			case ModeEnforce, ModeAudit:
				pol.Mode = Mode(s)
			default:
				ps.nodeErrorf(f.val, "mode must be %q or %q, got %q", ModeEnforce, ModeAudit, s)
			}
		}
	}
	// Services and segments first: rules and tests may come before them in
	// the file.
	ps.defServices, ps.serviceNames = map[string]Service{}, map[string]bool{}
	if f, ok := top["services"]; ok && !isNull(f.val) {
		pol.Services = ps.services(f.val)
	}
	ps.defined = map[string]bool{}
	if f, ok := top["segments"]; ok && !isNull(f.val) {
		pol.Segments = ps.segments(f.val)
	}
	if f, ok := top["rules"]; ok && !isNull(f.val) {
		pol.Rules = ps.rules(f.val)
	}
	if f, ok := top["tests"]; ok && !isNull(f.val) {
		pol.Tests = ps.tests(f.val)
	}
	return pol
}

// segments reads the segments mapping and marks every name it defines.
func (ps *parser) segments(n *yaml.Node) []Segment {
	var out []Segment
	for _, p := range ps.pairs(n, "segments") {
		ps.defined[p.name] = true
		switch p.name {
		case "":
			ps.nodeErrorf(p.key, "segment name is empty")
			continue
		case Wildcard:
			ps.nodeErrorf(p.key, "%q is reserved (it means any node) and cannot name a segment", Wildcard)
			continue
		}
		seg := Segment{Name: p.name, Selector: map[string]string{}, Pos: posOf(p.key)}
		ps.selector(&seg, p.val)
		out = append(out, seg)
	}
	return out
}

// rules reads the rules list.
func (ps *parser) rules(n *yaml.Node) []Rule {
	if n.Kind != yaml.SequenceNode {
		ps.nodeErrorf(n, "rules must be a list, got %s", describe(n))
		return nil
	}
	var out []Rule
	names := map[string]int{}
	for _, item := range n.Content {
		if item = yamlResolve(item); item == nil {
			continue
		}
		f := ps.fields(item, "a rule", "name", "from", "to", "ports")
		if item.Kind != yaml.MappingNode {
			continue
		}
		r := Rule{Pos: posOf(item)}
		if p, ok := f["name"]; !ok {
			ps.nodeErrorf(item, "rule has no name")
		} else if s, ok := ps.str(p.val, "rule name"); ok {
			switch first, dup := names[s]; {
			case s == "":
				ps.nodeErrorf(p.val, "rule name is empty")
			case dup:
				ps.nodeErrorf(p.val, "duplicate rule name %q (first at line %d)", s, first)
			default:
				names[s] = p.val.Line
			}
			r.Name = s
		}
		label := "rule " + strconv.Quote(r.Name)
		if r.Name == "" {
			label = "rule"
		}
		r.From = ps.segmentList(item, f, "from", label)
		r.To = ps.segmentList(item, f, "to", label)
		if p, ok := f["ports"]; !ok {
			ps.nodeErrorf(item, "%s has no ports", label)
		} else {
			for _, pn := range ps.list(p.val, label+" ports", "[tcp/443, icmp, https]") {
				if e, ok := ps.portEntry(pn, true); ok {
					r.Entries = append(r.Entries, e)
					r.Ports = append(r.Ports, e.Ports...)
				}
			}
			if !slices.ContainsFunc(r.Entries, func(e PortEntry) bool { return e.Service != "" }) {
				r.Entries = nil // all plain ports: Ports says it all
			}
		}
		out = append(out, r)
	}
	return out
}

// segmentList reads a rule's from or to list.
func (ps *parser) segmentList(item *yaml.Node, f map[string]yamlPair, key, label string) []string {
	p, ok := f[key]
	if !ok {
		ps.nodeErrorf(item, "%s has no %s", label, key)
		return nil
	}
	var out []string
	for _, n := range ps.list(p.val, label+" "+key, `[web] or ["*"]`) {
		if s, ok := ps.segmentRef(n, key); ok {
			out = append(out, s)
		}
	}
	return out
}

// segmentRef reads one segment name or Wildcard; a name must be defined in
// the segments section.
func (ps *parser) segmentRef(n *yaml.Node, key string) (string, bool) {
	s, ok := ps.str(n, key)
	if !ok {
		return "", false
	}
	if s != Wildcard && !ps.defined[s] {
		ps.nodeErrorf(n, "undefined segment %q in %s (define it under segments, or use \"*\")", s, key)
		return "", false
	}
	return s, true
}

// tests reads the tests list.
func (ps *parser) tests(n *yaml.Node) []Test {
	if n.Kind != yaml.SequenceNode {
		ps.nodeErrorf(n, "tests must be a list, got %s", describe(n))
		return nil
	}
	var out []Test
	for _, item := range n.Content {
		if item = yamlResolve(item); item == nil {
			continue
		}
		f := ps.fields(item, "a test", "from", "to", "port", "expect")
		if item.Kind != yaml.MappingNode {
			continue
		}
		t := Test{Pos: posOf(item)}
		for _, key := range []string{"from", "to", "port", "expect"} {
			if _, ok := f[key]; !ok {
				ps.nodeErrorf(item, "test has no %s", key)
			}
		}
		if p, ok := f["from"]; ok {
			t.From, _ = ps.segmentRef(p.val, "test from")
		}
		if p, ok := f["to"]; ok {
			t.To, _ = ps.segmentRef(p.val, "test to")
		}
		if p, ok := f["port"]; ok {
			t.Port, t.Service = ps.testPort(p.val)
		}
		if p, ok := f["expect"]; ok {
			if s, ok := ps.str(p.val, "expect"); ok {
				if s == "allow" || s == "deny" {
					t.Expect = s
				} else {
					ps.nodeErrorf(p.val, "expect must be \"allow\" or \"deny\", got %q", s)
				}
			}
		}
		out = append(out, t)
	}
	return out
}

// testPort reads a test's port: one flow (tcp/N, udp/N or icmp), or the
// name of a service of exactly one such port.
func (ps *parser) testPort(n *yaml.Node) (Port, string) {
	e, ok := ps.portEntry(n, true)
	if !ok {
		return Port{}, ""
	}
	one := len(e.Ports) == 1 && e.Ports[0].Proto != protoNameAny && e.Ports[0].Lo == e.Ports[0].Hi
	switch {
	case one:
		return e.Ports[0], e.Service
	case e.Service != "":
		ps.nodeErrorf(n, "test port %q is a service of %s; a test checks one flow: name a service of one port, or write tcp/PORT, udp/PORT or icmp", e.Service, describePorts(e.Ports))
	default:
		ps.nodeErrorf(n, "test port %q must be one flow: tcp/PORT, udp/PORT or icmp", n.Value)
	}
	return Port{}, ""
}

// describePorts gives "2 ports (udp/53, tcp/53)" or "the range tcp/2379-2380".
func describePorts(ports []Port) string {
	if len(ports) == 1 {
		return "the entry " + ports[0].String()
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = p.String()
	}
	return strconv.Itoa(len(ports)) + " ports (" + strings.Join(s, ", ") + ")"
}
