package fleetmap

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// demo is a small fleet map with every feature: an unknown source, a
// self-loop, both directions between two segments, parallel verdicts, an
// unused rule, a missing node and awkward names.
func demo() Map {
	return Map{
		Segments: []Segment{{"web", 2}, {"app.v2", 2}, {"db_main", 1}, {"ops-team", 1}, {`we"ird<&>`, 1}},
		Edges: []Edge{
			{From: "web", To: "app.v2", Verdict: "allowed", Ports: []string{"tcp/8080"}, Connections: 120},
			{From: "web", To: "app.v2", Verdict: "allowed", Ports: []string{"tcp/8080", "tcp/443"}, Connections: 3}, // merged
			{From: "app.v2", To: "db_main", Verdict: "allowed", Ports: []string{"tcp/5432"}, Connections: 40},
			{From: "app.v2", To: "db_main", Verdict: "audited", Ports: []string{"tcp/22"}, Connections: 2},
			{From: "db_main", To: "app.v2", Verdict: "denied", Ports: []string{"tcp/9000"}, Connections: 1},
			{From: "unknown", To: "web", Verdict: "denied", Ports: []string{"tcp/23", "icmp"}, Connections: 7},
			{From: "ops-team", To: "ops-team", Verdict: "allowed", Ports: []string{"tcp/22"}, Connections: 5},
			{From: `we"ird<&>`, To: "web", Verdict: "audited", Ports: []string{"udp/53", "tcp/80", "tcp/10"}, Connections: 4},
		},
		Unused:  []Rule{{Name: "ops-ssh", From: "ops-team", To: "db_main", Ports: []string{"tcp/22"}}},
		Missing: []Missing{{Node: "db-2", Reason: "timeout after 2s"}},
		Since:   15 * time.Minute,
	}
}

func TestNormalize(t *testing.T) {
	n := demo().Normalize()
	var names []string
	for _, s := range n.Segments {
		names = append(names, s.Name)
	}
	want := []string{"app.v2", "db_main", "ops-team", "unknown", `we"ird<&>`, "web"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("segments %v, want %v", names, want)
	}
	if e := n.Edges[len(n.Edges)-1]; e.From != "web" || e.To != "app.v2" {
		t.Fatalf("last edge %+v", e)
	}
	var merged Edge
	for _, e := range n.Edges {
		if e.From == "web" && e.To == "app.v2" {
			merged = e
		}
	}
	if !reflect.DeepEqual(merged.Ports, []string{"tcp/443", "tcp/8080"}) || merged.Connections != 123 {
		t.Fatalf("merged edge %+v", merged)
	}
	if got := normPorts([]string{"udp/53", "icmp", "tcp/80", "tcp/10", "tcp/80", "tcp/5000-5010", "any"}); !reflect.DeepEqual(got,
		[]string{"tcp/10", "tcp/80", "tcp/5000-5010", "udp/53", "icmp", "any"}) {
		t.Fatalf("ports %v", got)
	}
	if e := (Map{Edges: []Edge{{From: "", To: "b", Verdict: "deny"}}}).Normalize().Edges[0]; e.Verdict != VerdictDenied || e.From != Unknown {
		t.Fatalf("verdict alias, empty source: %+v", e)
	}
}

func TestMermaid(t *testing.T) {
	out := demo().Mermaid()
	if !strings.HasPrefix(out, "flowchart LR\n") {
		t.Fatalf("header:\n%s", out)
	}
	for _, want := range []string{
		`s0["app.v2 (2)"]`,
		`s3["unknown"]:::implied`,
		`s4["we#34;ird#60;#38;#62; (1)"]`,
		`s5 -->|"allowed: tcp/443 tcp/8080, 123 conn"| s0`,
		`s0 -->|"audited: tcp/22, 2 conn"| s1`,
		`s2 -->|"allowed: tcp/22, 5 conn"| s2`,
		`s2 -.->|"unused ops-ssh: tcp/22"| s1`,
		`missing["no answer: db-2 (timeout after 2s)"]:::missing`,
		"linkStyle 0 stroke:" + colourAllowed,
		"linkStyle 7 stroke:" + colourUnused,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if strings.Count(out, "-->")+strings.Count(out, "-.->") != 8 {
		t.Errorf("want 8 edges:\n%s", out)
	}
}

func TestDOT(t *testing.T) {
	out := demo().DOT()
	for _, want := range []string{
		"digraph segmesh {",
		`s4 [label="we\"ird<&>\n1 member"];`,
		`s3 [label="unknown", style="rounded,dashed"];`,
		`s2 -> s1 [label="unused ops-ssh: tcp/22", style=dashed`,
		`color="` + colourDenied + `"`,
		`no answer: db-2 (timeout after 2s)`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	dot, err := exec.LookPath("dot")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("graphviz dot not installed (CI=true: required)")
		}
		t.Skip("graphviz dot not installed")
	}
	odd := Map{Segments: []Segment{{"back\\slash", 1}, {"new\nline", 2}, {"{rec|ord}", 1}, {"<html>", 1}}, Edges: []Edge{
		{From: "back\\slash", To: "new\nline", Verdict: "allowed", Ports: []string{"tcp/1"}},
		{From: "{rec|ord}", To: "<html>", Verdict: "odd\"verdict"},
	}}
	if out := odd.DOT(); !strings.Contains(out, `label="back\\slash\n1 member"`) || strings.Contains(out, "new\nline") {
		t.Errorf("escaping:\n%s", out)
	}
	for name, m := range map[string]Map{"demo": demo(), "random": randomMap(30, 60, 1), "empty": {}, "odd": odd} {
		cmd := exec.Command(dot, "-Tsvg")
		cmd.Stdin = strings.NewReader(m.DOT())
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		svg, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("%s: dot -Tsvg: %v: %s\n%s", name, err, stderr.String(), m.DOT())
		}
		wellFormed(t, svg)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, m := range []Map{demo(), {}, randomMap(30, 60, 2)} {
		b, err := m.JSON()
		if err != nil {
			t.Fatal(err)
		}
		var back Map
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if want := m.Normalize(); !reflect.DeepEqual(back.Normalize(), want) {
			t.Fatalf("round trip:\n%+v\nwant\n%+v", back, want)
		}
		b2, _ := back.JSON()
		if !bytes.Equal(b, b2) {
			t.Fatalf("not stable:\n%s\n%s", b, b2)
		}
	}
	b, _ := Map{}.JSON()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"segments", "edges", "unused", "missing"} {
		if string(raw[k]) != "[]" {
			t.Errorf("empty map: %s = %s, want []", k, raw[k])
		}
	}
	if _, ok := raw["since"]; ok {
		t.Error("since present with Since 0")
	}
	b, _ = demo().JSON()
	for _, want := range []string{`"missing": [`, `"node": "db-2"`, `"connections": 123`, `"since": "15m0s"`, `"members": 2`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("no %s in\n%s", want, b)
		}
	}
}

// wellFormed parses b as XML and returns its elements.
func wellFormed(t *testing.T, b []byte) []xml.StartElement {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	var els []xml.StartElement
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return els
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b)
		}
		if s, ok := tok.(xml.StartElement); ok {
			els = append(els, s.Copy())
		}
	}
}

// svgText is every character data of the document.
func svgText(t *testing.T, b []byte) string {
	d := xml.NewDecoder(bytes.NewReader(b))
	var s strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return s.String()
		}
		if c, ok := tok.(xml.CharData); ok {
			s.Write(c)
			s.WriteByte('\n')
		}
	}
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

type box struct{ x, y, w, h float64 }

func segmentBoxes(t *testing.T, els []xml.StartElement) []box {
	var out []box
	for _, e := range els {
		if e.Name.Local != "rect" || attr(e, "class") != "segment" {
			continue
		}
		var v [4]float64
		for i, k := range []string{"x", "y", "width", "height"} {
			f, err := strconv.ParseFloat(attr(e, k), 64)
			if err != nil {
				t.Fatalf("rect %s: %v", k, err)
			}
			v[i] = f
		}
		out = append(out, box{v[0], v[1], v[2], v[3]})
	}
	return out
}

func checkSVG(t *testing.T, m Map) []xml.StartElement {
	t.Helper()
	b := m.SVG()
	els := wellFormed(t, b)
	if len(els) == 0 || els[0].Name.Local != "svg" {
		t.Fatalf("root is not <svg>")
	}
	text := svgText(t, b)
	n := m.Normalize()
	for _, s := range n.Segments {
		if !strings.Contains(text, s.Name) {
			t.Errorf("segment %q not named in the SVG", s.Name)
		}
	}
	for _, x := range n.Missing {
		if !strings.Contains(text, x.Node) {
			t.Errorf("missing node %q not named", x.Node)
		}
	}
	boxes := segmentBoxes(t, els)
	if len(boxes) != len(n.Segments) {
		t.Fatalf("%d boxes for %d segments", len(boxes), len(n.Segments))
	}
	w, _ := strconv.ParseFloat(attr(els[0], "width"), 64)
	h, _ := strconv.ParseFloat(attr(els[0], "height"), 64)
	for i, a := range boxes {
		if a.x < 0 || a.y < 0 || a.x+a.w > w || a.y+a.h > h {
			t.Errorf("box %v outside the %vx%v canvas", a, w, h)
		}
		for _, c := range boxes[i+1:] {
			if a.x < c.x+c.w && c.x < a.x+a.w && a.y < c.y+c.h && c.y < a.y+a.h {
				t.Errorf("boxes overlap: %v %v", a, c)
			}
		}
	}
	paths := 0
	for _, e := range els {
		if e.Name.Local == "path" && attr(e, "class") == "edge" {
			paths++
			if !strings.HasPrefix(attr(e, "marker-end"), "url(#fm-arrow-") {
				t.Errorf("edge without arrowhead: %v", e)
			}
		}
	}
	if paths != len(n.Edges)+len(n.Unused) {
		t.Errorf("%d edge paths for %d edges and %d unused rules", paths, len(n.Edges), len(n.Unused))
	}
	if !bytes.Equal(b, m.SVG()) {
		t.Error("SVG not deterministic")
	}
	return els
}

func TestSVGDemo(t *testing.T) {
	els := checkSVG(t, demo())
	dashed := 0
	for _, e := range els {
		if e.Name.Local == "path" && attr(e, "class") == "edge" && attr(e, "stroke-dasharray") != "" {
			dashed++
		}
	}
	if dashed != 1 {
		t.Errorf("%d dashed edges, want 1 (the unused rule)", dashed)
	}
	text := svgText(t, demo().SVG())
	for _, want := range []string{"allowed: tcp/443 tcp/8080, 123 conn", "unused ops-ssh: tcp/22", "denied", "audited", "db-2: timeout after 2s", "2 members", "last 15m0s"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in the SVG text", want)
		}
	}
	if os.Getenv("FLEETMAP_SVG_OUT") != "" {
		os.WriteFile(os.Getenv("FLEETMAP_SVG_OUT"), demo().SVG(), 0o644)
	}
}

func TestSVGEdgeCases(t *testing.T) {
	checkSVG(t, Map{})
	checkSVG(t, Map{Segments: []Segment{{"only", 3}}})
	// Segments without edges, a cycle, and labels crowding one pair.
	m := Map{Missing: []Missing{{"n1", "refused"}, {"n0", "timeout"}}}
	for i := range 20 {
		m.Segments = append(m.Segments, Segment{fmt.Sprintf("seg-%02d", i), i})
	}
	m.Edges = []Edge{
		{From: "seg-00", To: "seg-01", Verdict: "allowed", Ports: []string{"tcp/1"}},
		{From: "seg-01", To: "seg-02", Verdict: "allowed"},
		{From: "seg-02", To: "seg-00", Verdict: "denied"},
		{From: "seg-00", To: "seg-02", Verdict: "audited"},
		{From: "seg-00", To: "seg-02", Verdict: "allowed"},
		{From: "seg-03", To: "seg-03", Verdict: "allowed"},
		{From: "seg-03", To: "seg-03", Verdict: "denied"},
		{From: "a-very-long-segment-name-that-needs-shortening-in-a-box", To: "seg-00", Verdict: "allowed",
			Ports: []string{"tcp/1", "tcp/2", "tcp/3", "tcp/4", "tcp/5", "tcp/6"}},
	}
	m.Unused = []Rule{{Name: "r", From: "seg-03", To: "seg-03"}, {Name: "any", From: "*", To: "seg-05"}}
	checkSVG(t, m)
	labelsApart(t, m)
	if p := os.Getenv("FLEETMAP_SVG_OUT"); p != "" {
		os.WriteFile(strings.TrimSuffix(p, ".svg")+"-edge.svg", m.SVG(), 0o644)
	}
}

// randomMap is a seeded map of nseg segments and about nedge edges.
func randomMap(nseg, nedge int, seed uint64) Map {
	r := rand.New(rand.NewPCG(seed, seed*7+1))
	var m Map
	tiers := []string{"web", "api", "auth", "db", "cache", "queue", "ops", "batch", "edge", "mon"}
	for i := range nseg {
		m.Segments = append(m.Segments, Segment{Name: fmt.Sprintf("%s-%d.%s", tiers[i%len(tiers)], i, []string{"prod", "stg", "dev_x"}[i%3]), Members: 1 + r.IntN(12)})
	}
	verdicts := []string{VerdictAllowed, VerdictAllowed, VerdictAllowed, VerdictDenied, VerdictAudited}
	ports := []string{"tcp/443", "tcp/5432", "tcp/6379", "udp/53", "icmp", "tcp/8080", "tcp/22", "tcp/9477"}
	for range nedge {
		a, b := r.IntN(nseg), r.IntN(nseg)
		if r.IntN(3) > 0 { // mostly "downstream", as real tiers are
			a, b = min(a, b), max(a, b)
		}
		e := Edge{From: m.Segments[a].Name, To: m.Segments[b].Name, Verdict: verdicts[r.IntN(len(verdicts))], Connections: uint64(r.IntN(5000))}
		for range 1 + r.IntN(3) {
			e.Ports = append(e.Ports, ports[r.IntN(len(ports))])
		}
		m.Edges = append(m.Edges, e)
	}
	for i := range 6 {
		m.Unused = append(m.Unused, Rule{Name: fmt.Sprintf("rule-%d", i), From: m.Segments[r.IntN(nseg)].Name, To: m.Segments[r.IntN(nseg)].Name, Ports: []string{ports[r.IntN(len(ports))]}})
	}
	return m
}

func TestSVGThirtySegments(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		m := randomMap(30, 60, seed)
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			checkSVG(t, m)
			labelsApart(t, m)
		})
	}
	if p := os.Getenv("FLEETMAP_SVG_OUT"); p != "" {
		os.WriteFile(strings.TrimSuffix(p, ".svg")+"-30.svg", randomMap(30, 60, 1).SVG(), 0o644)
	}
}

// labelsApart checks, in layout coordinates, that no label overlaps a box
// or another label.
func labelsApart(t *testing.T, m Map) {
	t.Helper()
	n := m.Normalize()
	l := newLayout(n, implied(m, n))
	var boxes []rect
	for _, ly := range l.layers {
		for _, nd := range ly {
			if !nd.dummy {
				boxes = append(boxes, nd.box())
			}
		}
	}
	bad := 0
	for i, a := range l.labels {
		for _, b := range boxes {
			if a.rect().overlaps(b) {
				bad++
			}
		}
		for _, b := range l.labels[i+1:] {
			if a.rect().overlaps(b.rect()) {
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d label overlaps", bad)
	}
}

func BenchmarkSVG30(b *testing.B) {
	m := randomMap(30, 60, 1)
	b.ReportAllocs()
	for b.Loop() {
		m.SVG()
	}
}

func ExampleMap_Mermaid() {
	m := Map{
		Segments: []Segment{{Name: "web", Members: 2}, {Name: "db", Members: 1}},
		Edges: []Edge{
			{From: "web", To: "db", Verdict: "allowed", Ports: []string{"tcp/5432"}, Connections: 42},
			{From: "unknown", To: "db", Verdict: "denied", Ports: []string{"tcp/22"}, Connections: 3},
		},
		Unused: []Rule{{Name: "backup", From: "db", To: "web", Ports: []string{"tcp/873"}}},
	}
	fmt.Print(m.Mermaid())
	// Output:
	// flowchart LR
	//   %% segmesh map: all kept observations
	//   s0["db (1)"]
	//   s1["unknown"]:::implied
	//   s2["web (2)"]
	//   s1 -->|"denied: tcp/22, 3 conn"| s0
	//   s2 -->|"allowed: tcp/5432, 42 conn"| s0
	//   s0 -.->|"unused backup: tcp/873"| s2
	//   linkStyle 0 stroke:#c62828,stroke-width:2px
	//   linkStyle 1 stroke:#2e7d32,stroke-width:2px
	//   linkStyle 2 stroke:#6b7280
	//   classDef implied stroke-dasharray:4 3
}

// tieredMap is a fleet as fleets are: three environments of nine tiers,
// and ops, monitoring and backup segments reaching into all of them.
func tieredMap() Map {
	var m Map
	tiers := []string{"lb", "web", "api", "auth", "db", "cache", "queue", "worker", "search"}
	for _, e := range []string{"prod", "stg", "dev"} {
		for i, ti := range tiers {
			m.Segments = append(m.Segments, Segment{ti + "-" + e, 1 + i%4})
		}
	}
	m.Segments = append(m.Segments, Segment{"ops", 2}, Segment{"mon", 1}, Segment{"backup", 1})
	link := func(a, b, v string, p ...string) {
		m.Edges = append(m.Edges, Edge{From: a, To: b, Verdict: v, Ports: p, Connections: uint64(len(a) * len(b) * 7)})
	}
	for _, e := range []string{"prod", "stg", "dev"} {
		link("lb-"+e, "web-"+e, "allowed", "tcp/443")
		link("web-"+e, "api-"+e, "allowed", "tcp/8080")
		link("api-"+e, "auth-"+e, "allowed", "tcp/9000")
		link("api-"+e, "db-"+e, "allowed", "tcp/5432")
		link("api-"+e, "cache-"+e, "allowed", "tcp/6379")
		link("api-"+e, "queue-"+e, "allowed", "tcp/5672")
		link("worker-"+e, "queue-"+e, "allowed", "tcp/5672")
		link("worker-"+e, "db-"+e, "allowed", "tcp/5432")
		link("api-"+e, "search-"+e, "audited", "tcp/9200")
		link("ops", "db-"+e, "allowed", "tcp/22")
		link("mon", "api-"+e, "allowed", "tcp/9100")
		link("backup", "db-"+e, "denied", "tcp/873")
		m.Unused = append(m.Unused, Rule{Name: "web-db", From: "web-" + e, To: "db-" + e, Ports: []string{"tcp/5432"}})
	}
	link("unknown", "lb-prod", "denied", "tcp/22")
	link("db-stg", "db-prod", "denied", "tcp/5432")
	return m
}

func TestSVGTiered(t *testing.T) {
	m := tieredMap()
	checkSVG(t, m)
	labelsApart(t, m)
	if p := os.Getenv("FLEETMAP_SVG_OUT"); p != "" {
		os.WriteFile(strings.TrimSuffix(p, ".svg")+"-tiered.svg", m.SVG(), 0o644)
	}
}
