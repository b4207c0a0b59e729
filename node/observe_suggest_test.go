package node

import (
	"strings"
	"testing"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
)

const suggestTestPolicy = `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db: {role: db}
  ops: {role: ops}
rules:
  - {name: web-to-app, from: [web], to: [app], ports: [tcp/8080]}
`

// TestSuggestLabelsDeniedFlows: a rule from denied flows (enforce mode)
// says so in a comment (naming the ports when only some are from denied
// flows), the header counts are set, the rules and --policy still parse;
// with auditOnly the denied flows are left out and counted; the peer API's
// flows are left out either way.
func TestSuggestLabelsDeniedFlows(t *testing.T) {
	pol, err := acl.Parse("p.yaml", []byte(suggestTestPolicy))
	if err != nil {
		t.Fatal(err)
	}
	obs := func(src, dst, verdict string, port uint16) api.Observation {
		return api.Observation{SrcName: src + "-1", SrcSegments: []string{src}, DstName: dst + "-1", DstSegments: []string{dst},
			Proto: "tcp", Port: port, Count: 1, Verdict: verdict}
	}
	all := []api.Observation{
		obs("app", "db", api.VerdictAudited, 5432),
		obs("app", "db", api.VerdictDenied, 22), // app -> db: mixed
		obs("web", "db", api.VerdictDenied, 5432),
		obs("web", "db", api.VerdictDenied, 5433), // web -> db: denied only
		obs("ops", "app", api.VerdictAudited, 9100),
		obs("web", "app", api.VerdictAllowed, 8080), // not a candidate
		obs("ops", "db", api.VerdictDenied, 9477),   // the peer API
	}

	s, err := suggest(pol, 4, all, false, 9477)
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != 4 || s.Flows != 5 || s.Denied != 3 || s.LeftOut != 0 {
		t.Errorf("version %d, flows %d, denied %d, left out %d; want 4, 5, 3, 0", s.Version, s.Flows, s.Denied, s.LeftOut)
	}
	for _, w := range []string{
		"  # tcp/22 from denied flows (enforce mode): check they are wanted\n  - name: suggested-app-to-db\n    from: [app]\n    to: [db]\n    ports: [tcp/22, tcp/5432]\n",
		"  # from denied flows (enforce mode): check they are wanted\n  - name: suggested-web-to-db\n",
		"    ports: [tcp/22, tcp/5432]\n  - name: suggested-ops-to-app\n", // no label: audited only
	} {
		if !strings.Contains(s.Rules, w) {
			t.Errorf("rules lack %q:\n%s", w, s.Rules)
		}
	}
	if n := strings.Count(s.Rules, "denied flows"); n != 2 {
		t.Errorf("%d labels, want 2:\n%s", n, s.Rules)
	}
	if len(s.Unplaceable) != 1 || !strings.Contains(s.Unplaceable[0], "1 flow(s) to the peer API (tcp/9477) left out") {
		t.Errorf("unplaceable %q", s.Unplaceable)
	}
	// Pasted under rules: and as --policy, the output parses.
	pasted, err := acl.Parse("pasted.yaml", []byte(strings.TrimSuffix(suggestTestPolicy, "\n")+"\n"+s.Rules))
	if err != nil || len(pasted.Rules) != 4 {
		t.Fatalf("pasted under rules: %v (%d rules)\n%s", err, len(pasted.Rules), s.Rules)
	}
	full, err := acl.Parse("full.yaml", []byte(s.Policy))
	if err != nil || len(full.Rules) != 4 || !strings.Contains(s.Policy, "  # from denied flows (enforce mode)") {
		t.Fatalf("--policy: %v\n%s", err, s.Policy)
	}

	s, err = suggest(pol, 4, all, true, 9477)
	if err != nil {
		t.Fatal(err)
	}
	if s.Flows != 2 || s.Denied != 0 || s.LeftOut != 3 {
		t.Errorf("audit only: flows %d, denied %d, left out %d; want 2, 0, 3", s.Flows, s.Denied, s.LeftOut)
	}
	want := "  - name: suggested-app-to-db\n    from: [app]\n    to: [db]\n    ports: [tcp/5432]\n" +
		"  - name: suggested-ops-to-app\n    from: [ops]\n    to: [app]\n    ports: [tcp/9100]\n"
	if s.Rules != want {
		t.Errorf("audit only rules:\n%s\nwant\n%s", s.Rules, want)
	}

	if s, err = suggest(pol, 4, all[2:4], true, 9477); err != nil || s.Rules != "" || s.Policy != "" || s.LeftOut != 2 {
		t.Errorf("audit only, denied flows only: %+v, %v", s, err)
	}
}
