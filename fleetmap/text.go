package fleetmap

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Colours per verdict (and for unused rules), shared by DOT and SVG.
const (
	colourAllowed = "#2e7d32"
	colourDenied  = "#c62828"
	colourAudited = "#ef6c00"
	colourUnused  = "#6b7280"
	colourOther   = "#455a64"
)

func verdictColour(v string) string {
	switch v {
	case VerdictAllowed:
		return colourAllowed
	case VerdictDenied:
		return colourDenied
	case VerdictAudited:
		return colourAudited
	}
	return colourOther
}

// clean makes s one line of valid UTF-8 (control characters become spaces).
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

type jsonMap struct {
	Segments []Segment `json:"segments"`
	Edges    []Edge    `json:"edges"`
	Unused   []Rule    `json:"unused"`
	Missing  []Missing `json:"missing"`
	Since    string    `json:"since,omitempty"` // a Go duration ("15m0s"); absent: all kept observations
}

// MarshalJSON encodes the normalized map (see JSON).
func (m Map) MarshalJSON() ([]byte, error) {
	n := m.Normalize()
	j := jsonMap{Segments: n.Segments, Edges: n.Edges, Unused: n.Unused, Missing: n.Missing}
	if n.Since > 0 {
		j.Since = n.Since.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON writes.
func (m *Map) UnmarshalJSON(b []byte) error {
	var j jsonMap
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = Map{Segments: j.Segments, Edges: j.Edges, Unused: j.Unused, Missing: j.Missing}
	if j.Since != "" {
		d, err := time.ParseDuration(j.Since)
		if err != nil {
			return fmt.Errorf("fleetmap: since: %w", err)
		}
		m.Since = d
	}
	return nil
}

// JSON is the normalized map as indented JSON:
//
//	{"segments": [{"name", "members"}],
//	 "edges": [{"from", "to", "verdict", "ports", "connections"}],
//	 "unused": [{"name", "from", "to", "ports"}],
//	 "missing": [{"node", "reason"}],
//	 "since": "15m0s"}
//
// Every list is present (empty rather than null); "since" is absent when
// Since is 0. json.Unmarshal into a Map reads it back.
func (m Map) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// mermaidText escapes s for a double-quoted Mermaid label: entity codes for
// the characters Mermaid or its HTML labels would interpret.
func mermaidText(s string) string {
	var b strings.Builder
	for _, r := range clean(s) {
		switch r {
		case '"', '#', '&', '<', '>', '|', '`', '\\', '[', ']', '{', '}':
			b.WriteString("#" + strconv.Itoa(int(r)) + ";")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Mermaid renders the map as a Mermaid flowchart (pastes into Markdown):
// "flowchart LR", one node per segment labelled "name (N)" (N members; a
// segment only edges name, such as Unknown, has no count), one edge per Edge
// labelled "verdict: ports, N conn" and coloured by verdict, a dashed edge
// (-.->) per unused rule, and, when nodes did not answer, a note node
// listing them. Node ids are s0, s1, ... in segment name order; labels are
// quoted with entity codes for special characters.
func (m Map) Mermaid() string {
	n := m.Normalize()
	imp := implied(m, n)
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	fmt.Fprintf(&b, "  %%%% segmesh map: %s\n", clean(sinceText(n.Since)))
	id := make(map[string]string, len(n.Segments))
	for i, s := range n.Segments {
		id[s.Name] = "s" + strconv.Itoa(i)
	}
	for _, s := range n.Segments {
		if imp[s.Name] {
			fmt.Fprintf(&b, "  %s[\"%s\"]:::implied\n", id[s.Name], mermaidText(s.Name))
			continue
		}
		fmt.Fprintf(&b, "  %s[\"%s (%d)\"]\n", id[s.Name], mermaidText(s.Name), s.Members)
	}
	var styles []string
	link := 0
	for _, e := range n.Edges {
		fmt.Fprintf(&b, "  %s -->|\"%s\"| %s\n", id[e.From], mermaidText(edgeLabel(e, 0)), id[e.To])
		styles = append(styles, fmt.Sprintf("  linkStyle %d stroke:%s,stroke-width:2px\n", link, verdictColour(e.Verdict)))
		link++
	}
	for _, r := range n.Unused {
		fmt.Fprintf(&b, "  %s -.->|\"%s\"| %s\n", id[r.From], mermaidText(ruleLabel(r, 0)), id[r.To])
		styles = append(styles, fmt.Sprintf("  linkStyle %d stroke:%s\n", link, colourUnused))
		link++
	}
	if len(n.Missing) > 0 {
		parts := make([]string, len(n.Missing))
		for i, x := range n.Missing {
			parts[i] = x.Node + " (" + x.Reason + ")"
		}
		fmt.Fprintf(&b, "  missing[\"%s\"]:::missing\n", mermaidText("no answer: "+strings.Join(parts, ", ")))
	}
	for _, s := range styles {
		b.WriteString(s)
	}
	if len(imp) > 0 {
		b.WriteString("  classDef implied stroke-dasharray:4 3\n")
	}
	if len(n.Missing) > 0 {
		b.WriteString("  classDef missing fill:#fff8e1,stroke:#b45309,stroke-dasharray:4 3\n")
	}
	return b.String()
}

// dotText escapes s for a double-quoted DOT string.
func dotText(s string) string {
	s = clean(s)
	s = strings.ReplaceAll(s, `\`, `\\`)
	return strings.ReplaceAll(s, `"`, `\"`)
}

// DOT renders the map as a Graphviz digraph (rankdir LR): one box per
// segment with its member count, one edge per Edge labelled "verdict: ports,
// N conn" and coloured by verdict (allowed green, denied red, audited
// orange), a dashed grey edge per unused rule, and the nodes that did not
// answer in the graph's label. Node ids are s0, s1, ... in segment name
// order.
func (m Map) DOT() string {
	n := m.Normalize()
	imp := implied(m, n)
	var b strings.Builder
	title := "segmesh map: " + sinceText(n.Since)
	if len(n.Missing) > 0 {
		parts := make([]string, len(n.Missing))
		for i, x := range n.Missing {
			parts[i] = x.Node + " (" + x.Reason + ")"
		}
		title += `\nno answer: ` + dotText(strings.Join(parts, ", "))
	}
	b.WriteString("digraph segmesh {\n")
	fmt.Fprintf(&b, "  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=12, labelloc=t, label=\"%s\"];\n", title)
	b.WriteString("  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f5f7fa\", color=\"#37474f\", fontname=\"Helvetica\"];\n")
	b.WriteString("  edge [fontname=\"Helvetica\", fontsize=10];\n")
	id := make(map[string]string, len(n.Segments))
	for i, s := range n.Segments {
		id[s.Name] = "s" + strconv.Itoa(i)
	}
	for _, s := range n.Segments {
		if imp[s.Name] {
			fmt.Fprintf(&b, "  %s [label=\"%s\", style=\"rounded,dashed\"];\n", id[s.Name], dotText(s.Name))
			continue
		}
		fmt.Fprintf(&b, "  %s [label=\"%s\\n%s\"];\n", id[s.Name], dotText(s.Name), members(s.Members))
	}
	for _, e := range n.Edges {
		c := verdictColour(e.Verdict)
		fmt.Fprintf(&b, "  %s -> %s [label=\"%s\", color=\"%s\", fontcolor=\"%s\"];\n", id[e.From], id[e.To], dotText(edgeLabel(e, 0)), c, c)
	}
	for _, r := range n.Unused {
		fmt.Fprintf(&b, "  %s -> %s [label=\"%s\", style=dashed, color=\"%s\", fontcolor=\"%s\"];\n", id[r.From], id[r.To], dotText(ruleLabel(r, 0)), colourUnused, colourUnused)
	}
	b.WriteString("}\n")
	return b.String()
}

func members(n int) string {
	if n == 1 {
		return "1 member"
	}
	return strconv.Itoa(n) + " members"
}
