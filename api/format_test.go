package api_test

import (
	"bytes"
	"testing"

	"github.com/segmesh/segmesh/api"
)

func TestFormatExplanation(t *testing.T) {
	e := &api.Explanation{
		Verdict: "deny", From: "api-1", To: "db-2", FromSegments: []string{"api"}, ToSegments: []string{},
		Port: "tcp/5432", Service: "postgres", Rules: []string{}, Mode: "enforce", Version: 3,
		Considered: []api.ExplainedRule{
			{
				Rule: "web-in", FromMatch: true, Ports: []string{"web", "icmp"},
				From: []api.ExplainedSegment{{Segment: "*", Match: true}},
				To: []api.ExplainedSegment{{Segment: "stable", Terms: []api.ExplainedTerm{
					{Term: `"!canary": "*"`, Match: true, Tag: "canary"},
					{Term: "role: web", Tag: "role", Present: true, Value: "db"},
				}}},
			},
			{
				Rule: "api-db", FromMatch: true, Ports: []string{"postgres"}, PortMatch: "postgres", Service: "postgres",
				From: []api.ExplainedSegment{{Segment: "api", Match: true, Terms: []api.ExplainedTerm{
					{Term: "role: app", Match: true, Tag: "role", Present: true, Value: "app"},
					{Term: "svc: api", Match: true, Tag: "svc", Present: true, Value: "api"},
				}}},
				To: []api.ExplainedSegment{{Segment: "prod-db", Terms: []api.ExplainedTerm{
					{Term: "env: [prod, staging]", Tag: "env", Present: true, Value: "dev"},
					{Term: "role: db", Match: true, Tag: "role", Present: true, Value: "db"},
				}}, {Segment: "tagged", Terms: []api.ExplainedTerm{{Term: `team: "*"`, Tag: "team"}}}},
			},
			{
				Rule: "ops", Allow: true, FromMatch: true, ToMatch: true, Ports: []string{"tcp/5000-6000"}, PortMatch: "tcp/5000-6000",
				From: []api.ExplainedSegment{{Segment: "*", Match: true}}, To: []api.ExplainedSegment{{Segment: "*", Match: true}},
			},
		},
	}
	var b bytes.Buffer
	api.FormatExplanation(&b, e)
	want := `DENY: api-1 -> db-2 tcp/5432 (service postgres) (policy v3, enforce mode)
  api-1 segments: api
  db-2 segments: (none)
  no rule allows it (default deny)
  rules:
    web-in: does not apply
      from * ✓ (any node)
      to stable ✗: "!canary": "*" ✓, role: web ✗ (role=db)
      port tcp/5432 ✗ (ports: web, icmp)
    api-db: does not apply
      from api ✓: role: app ✓, svc: api ✓
      to prod-db ✗: env: [prod, staging] ✗ (env=dev), role: db ✓ | tagged ✗: team: "*" ✗ (team absent)
      port tcp/5432 ✓ (service postgres)
    ops: allows it
      from * ✓ (any node)
      to * ✓ (any node)
      port tcp/5432 ✓ (tcp/5000-6000)
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
