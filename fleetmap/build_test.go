package fleetmap

import (
	"reflect"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	segs := []Segment{{"web", 2}, {"db", 1}, {"ops", 1}, {"prod", 3}}
	obs := []Observation{
		{From: []string{"web", "prod"}, To: []string{"db", "prod"}, Verdict: "allowed", Port: "tcp/5432", Connections: 10},
		{From: []string{"web"}, To: []string{"db"}, Verdict: "allowed", Port: "tcp/5432", Connections: 5},
		{From: nil, To: []string{"web"}, Verdict: "deny", Port: "tcp/22", Connections: 2},
		{From: []string{"ops"}, To: []string{"db"}, Verdict: "audited", Port: "tcp/22", Connections: 1},
		{From: []string{"ops"}, To: []string{"web"}, Verdict: "allowed", Port: "icmpv6", Connections: 1},
	}
	rules := []Rule{
		{Name: "web-db", From: "web", To: "db", Ports: []string{"tcp/5000-6000"}}, // used
		{Name: "ops-ssh", From: "ops", To: "db", Ports: []string{"tcp/22"}},       // only audited: unused
		{Name: "ping", From: "ops", To: "*", Ports: []string{"icmp"}},             // used (icmpv6)
		{Name: "any-prod", From: "*", To: "prod", Ports: []string{"any"}},         // used
		{Name: "web-db-http", From: "web", To: "db", Ports: []string{"tcp/80"}},   // unused
		{Name: "db-web", From: "db", To: "web", Ports: []string{"udp/1-65535"}},   // unused
	}
	m := Build(segs, obs, rules)
	var unused []string
	for _, r := range m.Unused {
		unused = append(unused, r.Name)
	}
	if want := []string{"db-web", "ops-ssh", "web-db-http"}; !reflect.DeepEqual(unused, want) {
		t.Fatalf("unused %v, want %v", unused, want)
	}
	var wd Edge
	for _, e := range m.Edges {
		if e.From == "web" && e.To == "db" {
			wd = e
		}
	}
	if wd.Connections != 15 || wd.Verdict != VerdictAllowed || !reflect.DeepEqual(wd.Ports, []string{"tcp/5432"}) {
		t.Fatalf("web→db %+v", wd)
	}
	if len(m.Edges) != 7 { // 4 pairs of the first, unknown→web, ops→db, ops→web
		t.Fatalf("%d edges: %+v", len(m.Edges), m.Edges)
	}
	if e := m.Edges[4]; e.From != Unknown || e.To != "web" || e.Verdict != VerdictDenied {
		t.Fatalf("edges %+v", m.Edges)
	}
	if m.Missing == nil || m.Unused == nil {
		t.Fatal("nil lists")
	}
	// Segments only edges name stay implied for the renderers: no count.
	if len(m.Segments) != len(segs) {
		t.Fatalf("segments %+v", m.Segments)
	}
	mm := m.Mermaid()
	if !strings.Contains(mm, `["unknown"]:::implied`) || strings.Contains(mm, "unknown (0)") {
		t.Fatalf("unknown drawn as a declared segment:\n%s", mm)
	}
	if d := m.DOT(); !strings.Contains(d, `[label="unknown", style="rounded,dashed"]`) {
		t.Fatalf("DOT: unknown drawn as a declared segment:\n%s", d)
	}
}
