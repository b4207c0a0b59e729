package acl

import (
	"fmt"
	"strings"
)

// FormatDiff renders the result of Diff and NewlyDenied for people, one
// change per line, in this order: the mode, segments, rules (each in the
// order Diff gives), then the newly denied flows:
//
//	~ mode: audit -> enforce
//	+ segment cache: {role: cache}
//	- segment old: {role: old}
//	~ segment db: {role: db} -> {env: prod, role: db}
//	+ rule x: from [web] to [app] ports [tcp/8080]
//	- rule y: from [app] to [db] ports [tcp/5432]
//	~ rule z: ports [tcp/1] -> [tcp/1-2]
//	newly denied flows:
//	  web-1 (web) -> db-1 (db) tcp/5432: would be denied, 120 packets seen
//
// A changed rule shows only the parts (from, to, ports) that changed,
// separated by "; ". Flows show the segments they carry ("no segment" when
// none) and their packet count when it is not zero. With no change and no
// flow the text is "no changes\n". The text ends with a newline.
func FormatDiff(rules []RuleChange, segments []SegmentChange, modeChange string, newlyDenied []Observed) string {
	var b strings.Builder
	if modeChange != "" {
		fmt.Fprintf(&b, "~ mode: %s\n", modeChange)
	}
	for _, c := range segments {
		switch {
		case c.Kind == ChangeAdded && c.New != nil:
			fmt.Fprintf(&b, "+ segment %s: %s\n", c.Name, c.New.SelectorString())
		case c.Kind == ChangeRemoved && c.Old != nil:
			fmt.Fprintf(&b, "- segment %s: %s\n", c.Name, c.Old.SelectorString())
		case c.Kind == ChangeChanged && c.Old != nil && c.New != nil:
			fmt.Fprintf(&b, "~ segment %s: %s -> %s\n", c.Name, c.Old.SelectorString(), c.New.SelectorString())
		}
	}
	for _, c := range rules {
		switch {
		case c.Kind == ChangeAdded && c.New != nil:
			fmt.Fprintf(&b, "+ rule %s: %s\n", c.Name, diffFormatRule(c.New))
		case c.Kind == ChangeRemoved && c.Old != nil:
			fmt.Fprintf(&b, "- rule %s: %s\n", c.Name, diffFormatRule(c.Old))
		case c.Kind == ChangeChanged && c.Old != nil && c.New != nil:
			fmt.Fprintf(&b, "~ rule %s: %s\n", c.Name, diffFormatRuleChange(c.Old, c.New))
		}
	}
	if len(newlyDenied) > 0 {
		b.WriteString("newly denied flows:\n")
		for i := range newlyDenied {
			fmt.Fprintf(&b, "  %s\n", diffFormatDenied(&newlyDenied[i]))
		}
	}
	if b.Len() == 0 {
		return "no changes\n"
	}
	return b.String()
}

// diffFormatRule gives "from [a] to [b] ports [tcp/1]".
func diffFormatRule(r *Rule) string {
	return fmt.Sprintf("from %s to %s ports %s", diffFormatList(r.From), diffFormatList(r.To), diffFormatPorts(r.Ports))
}

// diffFormatRuleChange lists the parts of a rule that changed.
func diffFormatRuleChange(o, n *Rule) string {
	var parts []string
	if !diffSameNames(o.From, n.From) {
		parts = append(parts, fmt.Sprintf("from %s -> %s", diffFormatList(o.From), diffFormatList(n.From)))
	}
	if !diffSameNames(o.To, n.To) {
		parts = append(parts, fmt.Sprintf("to %s -> %s", diffFormatList(o.To), diffFormatList(n.To)))
	}
	if !diffSamePorts(o.Ports, n.Ports) {
		parts = append(parts, fmt.Sprintf("ports %s -> %s", diffFormatPorts(o.Ports), diffFormatPorts(n.Ports)))
	}
	if len(parts) == 0 {
		return "unchanged"
	}
	return strings.Join(parts, "; ")
}

func diffFormatList(items []string) string { return "[" + strings.Join(items, ", ") + "]" }

func diffFormatPorts(ports []Port) string {
	s := make([]string, len(ports))
	for i, pt := range ports {
		s[i] = pt.String()
	}
	return diffFormatList(s)
}

// diffFormatDenied gives
// "web-1 (web) -> db-1 (db) tcp/5432: would be denied, 120 packets seen".
func diffFormatDenied(f *Observed) string {
	s := fmt.Sprintf("%s (%s) -> %s (%s) %s: would be denied",
		observedNodeLabel(f.SrcName), diffFormatSegments(f.SrcSegments), observedNodeLabel(f.DstName), diffFormatSegments(f.DstSegments), observedFlowLabel(f))
	switch f.Count {
	case 0:
		return s
	case 1:
		return s + ", 1 packet seen"
	default:
		return fmt.Sprintf("%s, %d packets seen", s, f.Count)
	}
}

func diffFormatSegments(segs []string) string {
	if len(segs) == 0 {
		return "no segment"
	}
	return strings.Join(segs, ", ")
}

// observedFlowLabel gives "tcp/5432", "udp/53", "icmp", "icmpv6" or "proto 47".
func observedFlowLabel(f *Observed) string {
	switch proto := f.flowProto(); proto {
	case protoNameTCP, protoNameUDP:
		return fmt.Sprintf("%s/%d", proto, f.Port)
	case protoNameICMP:
		if p := strings.ToLower(f.Proto); p == "icmpv6" || p == "58" || p == "ipv6-icmp" {
			return "icmpv6"
		}
		return protoNameICMP
	default:
		return "proto " + f.Proto
	}
}
