package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/test/harness"
)

// TestObsSuggestDiff: flows that obsPolicy denies, sent while it is in
// audit mode, show up as audited on db1; `policy suggest --policy` turned
// to enforce mode and applied lets exactly them pass (a flow not observed
// stays denied); and `policy diff` of a stricter file names the flows it
// would cut: live connections (conntrack) and audited flows.
func TestObsSuggestDiff(t *testing.T) {
	audit := strings.Replace(obsPolicy, "mode: enforce", "mode: audit", 1)
	m := newObsMesh(t, audit, nil)
	web, app, db := m.web, m.app, m.db
	if p := m.tc.Status(db).Policy; p.Mode != "audit" {
		t.Fatalf("db1 policy mode %q, want audit", p.Mode)
	}
	m.warmUp(web, db)
	m.warmUp(app, db)
	dbAddr := m.addr(db)
	observed := []struct {
		src *harness.Node
		f   flow
	}{
		{web, flow{"tcp", dbAddr, 5432}},
		{web, flow{"udp", dbAddr, 54}},
		{app, flow{"tcp", dbAddr, 6379}},
	}
	for _, o := range observed {
		expectProbe(t, o.src, o.f, resOK) // audit mode accepts what it would deny
		waitFlow(t, db.Socket, 10*time.Second, fmt.Sprintf("%s -> db1 %s audited", o.src.Name, o.f),
			m.flowFrom(o.src, o.f.proto, uint16(o.f.port), api.VerdictAudited))
	}

	rules := segmeshCLI(t, "policy", "suggest", "--socket", db.Socket)
	if rules.code != 0 {
		t.Fatalf("%v", rules)
	}
	t.Logf("policy suggest on db1:\n%s", rules.stdout)
	for _, port := range []string{"tcp/5432", "udp/54", "tcp/6379"} {
		if !strings.Contains(rules.stdout, port) {
			t.Errorf("policy suggest does not allow the observed %s", port)
		}
	}
	full := segmeshCLI(t, "policy", "suggest", "--policy", "--socket", db.Socket)
	if full.code != 0 {
		t.Fatalf("%v", full)
	}
	enforce := strings.Replace(full.stdout, "mode: audit", "mode: enforce", 1)
	if enforce == full.stdout {
		t.Fatalf("policy suggest --policy has no mode: audit to switch:\n%s", full.stdout)
	}
	a := applyPolicy(t, db, enforce)
	if a.mode != "enforce" {
		t.Fatalf("policy apply of the suggestion: mode %q, want enforce", a.mode)
	}
	if _, err := waitNodes(m.nodes(), time.Now(), 10*time.Second, hasPolicy(a.version, a.hash)); err != nil {
		t.Fatalf("suggested policy v%d not active everywhere: %v", a.version, err)
	}
	// Enforce mode is on (a flow nobody observed is denied), and the
	// observed flows pass under the suggested rules.
	expectProbe(t, web, flow{"tcp", dbAddr, 6379}, refusedAtSender(flow{proto: "tcp"}))
	for _, o := range observed {
		expectProbe(t, o.src, o.f, resOK)
	}
	t.Logf("suggested policy v%d (enforce) lets the %d observed flows pass; web1 -> db1 tcp/6379 stays denied", a.version, len(observed))

	// Live connections for conntrack: app1's by the original app-to-db rule,
	// web1's by the suggested one. The stricter file drops both rules and
	// keeps the suggested app -> db tcp/6379: app1's tcp/5432 is cut only
	// as a live connection (it was never denied), web1's udp/54 only as an
	// audited flow.
	for _, src := range []*harness.Node{app, web} {
		s := m.tc.Spawn(src.Namespace, "stream-"+src.Name, bins.Probe, "stream", "-interval", "100ms", fmt.Sprintf("%s:5432", dbAddr))
		if err := s.WaitOutput("echo 1 ", 10*time.Second); err != nil {
			t.Fatalf("stream %s -> db1 tcp/5432: %v", src.Name, err)
		}
	}
	stricter, removed := withoutRules(t, enforce, func(from, to []string) bool {
		return slices.Equal(from, []string{"web"}) && slices.Equal(to, []string{"db"})
	}, "app-to-db")
	file := writePolicy(t, db, stricter)
	d := segmeshCLI(t, "policy", "diff", file, "--socket", db.Socket)
	if d.code != 0 {
		t.Fatalf("%v", d)
	}
	t.Logf("policy diff of the file without rules %v:\n%s", removed, d.stdout)
	for _, r := range removed {
		if !strings.Contains(d.stdout, "- rule "+r+":") {
			t.Errorf("policy diff does not list the removed rule %s", r)
		}
	}
	cut := newlyDenied(d.stdout)
	for _, want := range []string{"web1 (web) -> db1 (db) tcp/5432", "web1 (web) -> db1 (db) udp/54", "app1 (app) -> db1 (db) tcp/5432"} {
		if !slices.ContainsFunc(cut, func(l string) bool { return strings.HasPrefix(l, want+":") }) {
			t.Errorf("policy diff does not name the flow it would cut: %s", want)
		}
	}
	for _, l := range cut {
		if strings.Contains(l, "tcp/6379") {
			t.Errorf("policy diff names a flow the file still allows: %s", l)
		}
	}
	if p := m.tc.Status(db).Policy; p.Version != a.version || p.Hash != a.hash {
		t.Errorf("policy diff changed the active policy: %+v, was v%d %s", p, a.version, a.hash)
	}
}

// newlyDenied returns the lines under "newly denied flows:" of `policy diff`.
func newlyDenied(out string) []string {
	_, rest, ok := strings.Cut(out, "newly denied flows:\n")
	if !ok {
		return nil
	}
	var lines []string
	for _, l := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(l, "  ") {
			break
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	return lines
}

// withoutRules returns policy without the rules drop accepts (by their from
// and to segments) or names, and the names of the rules it removed.
func withoutRules(t *testing.T, policy string, drop func(from, to []string) bool, names ...string) (string, []string) {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(policy), &doc); err != nil {
		t.Fatalf("parse policy: %v\n%s", err, policy)
	}
	rules, _ := doc["rules"].([]any)
	var kept []any
	var removed []string
	strs := func(v any) []string {
		var out []string
		l, _ := v.([]any)
		for _, x := range l {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	for _, r := range rules {
		rm, _ := r.(map[string]any)
		name := fmt.Sprint(rm["name"])
		if slices.Contains(names, name) || drop(strs(rm["from"]), strs(rm["to"])) {
			removed = append(removed, name)
			continue
		}
		kept = append(kept, r)
	}
	if len(removed) == 0 {
		t.Fatalf("test premise: no rule to remove in\n%s", policy)
	}
	doc["rules"] = kept
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), removed
}
