package node

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

const explainPolicy = `services:
  web: [tcp/80, tcp/443]
segments:
  db: {role: [db, cache], "!canary": "*"}
  web: {role: web}
rules:
  - {name: web-in, from: ["*"], to: [web], ports: [web]}
  - {name: db-pg, from: [db], to: [db], ports: [tcp/1, postgres]}
`

// TestExplainNamesServicesAndTerms: explain takes a service for the port,
// names the service a rule's port came from and each selector term's
// result; the JSON keeps every earlier field.
func TestExplainNamesServicesAndTerms(t *testing.T) {
	r := newRig(t, t.TempDir(), "")
	if _, err := r.n.ApplyPolicy([]byte(explainPolicy), ApplyOptions{AppliedBy: "t"}); err != nil {
		t.Fatal(err)
	}
	e, err := r.n.Explain("self", "self", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if e.Verdict != "allow" || e.Port != "tcp/5432" || e.Service != "postgres" || !slices.Equal(e.Rules, []string{"db-pg"}) {
		t.Fatalf("explanation %+v", e)
	}
	if len(e.Considered) != 2 {
		t.Fatalf("considered %+v, want both rules", e.Considered)
	}
	pg := e.Considered[1]
	if !pg.Allow || pg.PortMatch != "postgres" || pg.Service != "postgres" || !slices.Equal(pg.Ports, []string{"tcp/1", "postgres"}) {
		t.Errorf("db-pg: %+v", pg)
	}
	if len(pg.To) != 1 || len(pg.To[0].Terms) != 2 || pg.To[0].Terms[0].Term != `"!canary": "*"` || !pg.To[0].Terms[0].Match ||
		pg.To[0].Terms[1].Term != "role: [cache, db]" || !pg.To[0].Terms[1].Match || pg.To[0].Terms[1].Value != "db" {
		t.Errorf("db-pg to: %+v", pg.To)
	}
	in := e.Considered[0]
	if in.Allow || !in.FromMatch || in.ToMatch || in.PortMatch != "" || in.To[0].Terms[0].Value != "db" || in.To[0].Terms[0].Match {
		t.Errorf("web-in: %+v", in)
	}

	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"verdict":"allow"`, `"from":"self"`, `"to":"self"`, `"from_segments":["db"]`, `"to_segments":["db"]`,
		`"port":"tcp/5432"`, `"rules":["db-pg"]`, `"mode":"enforce"`, `"policy_version":1`, `"service":"postgres"`,
		`"considered":[{"rule":"web-in","allow":false,`, `"port_match":"postgres"`, `{"term":"role: [cache, db]","match":true,"tag":"role","present":true,"value":"db"}`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s:\n%s", key, b)
		}
	}

	for port, want := range map[string]string{
		"web":      `port "web": service "web" is 2 ports (tcp/80, tcp/443): give one flow, e.g. tcp/80`,
		"tcp/1-2":  `port "tcp/1-2": give one protocol and port, e.g. tcp/5432 or icmp`,
		"postgrez": `port "postgrez": unknown service "postgrez"`,
	} {
		if _, err := r.n.Explain("self", "self", port); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Explain port %s: %v, want %q", port, err, want)
		}
	}
}
