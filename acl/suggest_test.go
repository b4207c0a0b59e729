package acl

import (
	"reflect"
	"strings"
	"testing"
)

// suggestPolicy: web may reach app on 8080; a test forbids web -> db 22.
const suggestPolicy = `mode: audit
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
rules:
  - name: web-to-app
    from: [web]
    to: [app]
    ports: [tcp/8080]
  - name: suggested-app-to-web
    from: [app]
    to: [app]
    ports: [tcp/1]
tests:
  - {from: web, to: db, port: tcp/22, expect: deny}
  - {from: web, to: app, port: tcp/8080, expect: allow}
`

func suggestObs(src []string, srcName string, dst []string, dstName, proto string, port uint16) Observed {
	return Observed{SrcSegments: src, SrcName: srcName, DstSegments: dst, DstName: dstName, Proto: proto, Port: port, Count: 1}
}

func TestSuggest(t *testing.T) {
	p := polMustParse(t, suggestPolicy)
	web, app, db := []string{"web"}, []string{"app"}, []string{"db"}
	flows := []Observed{
		// web -> db: 5432, 5433 and 5435 (5434 never seen), twice 5432.
		suggestObs(web, "web-1", db, "db-1", "tcp", 5433),
		suggestObs(web, "web-2", db, "db-2", "tcp", 5432),
		suggestObs(web, "web-1", db, "db-1", "TCP", 5432),
		suggestObs(web, "web-1", db, "db-1", "tcp", 5435),
		suggestObs(web, "web-1", db, "db-1", "udp", 53),
		suggestObs(web, "web-1", db, "db-1", "icmpv6", 0),
		// Already allowed: nothing to suggest.
		suggestObs(web, "web-1", app, "app-1", "tcp", 8080),
		// A node in web and app (segments given in any order).
		suggestObs([]string{"app", "web"}, "both-1", db, "db-1", "tcp", 1),
		// app -> web: the natural name is taken.
		suggestObs(app, "app-1", web, "web-1", "udp", 65535),
		suggestObs(app, "app-1", web, "web-1", "udp", 65534),
		// Segments from tags (the given names are ignored).
		{SrcTags: map[string]string{"role": "app"}, SrcSegments: []string{"db"}, SrcName: "app-2",
			DstSegments: web, DstName: "web-1", Proto: "6", Port: 443},
		// Unplaceable.
		suggestObs(nil, "bare-1", db, "db-1", "tcp", 5432),
		suggestObs([]string{"ghost"}, "ghost-1", db, "db-1", "tcp", 5432),
		suggestObs(web, "web-1", nil, "", "tcp", 5432),
		suggestObs(web, "web-1", db, "db-1", "sctp", 5432),
		suggestObs(web, "web-1", db, "db-1", "tcp", 0),
		suggestObs(web, "web-1", db, "db-1", "tcp", 22),
		{SrcTags: map[string]string{"role": "none"}, SrcSegments: web, SrcName: "tagged-1", DstSegments: db, Proto: "tcp", Port: 1},
	}
	// Audited (audit mode) are web -> db tcp/5433, tcp/5432 from web-1 and
	// icmp, and app -> web; the rest was denied (enforce mode): a rule with
	// denied flows says so, naming their ports when not all are.
	for _, i := range []int{0, 2, 5, 8, 9, 10} {
		flows[i].Audited = true
	}
	rules, unplaced := Suggest(p, flows)

	wantRules := []Rule{
		{Name: "suggested-web-to-db", From: web, To: db, Ports: []Port{
			{Proto: "tcp", Lo: 5432, Hi: 5433}, {Proto: "tcp", Lo: 5435, Hi: 5435}, {Proto: "udp", Lo: 53, Hi: 53}, {Proto: "icmp"}},
			Comment: "tcp/5432, tcp/5435, udp/53 from denied flows (enforce mode): check they are wanted"},
		{Name: "suggested-web+app-to-db", From: []string{"web", "app"}, To: db, Ports: []Port{{Proto: "tcp", Lo: 1, Hi: 1}},
			Comment: DeniedComment},
		{Name: "suggested-app-to-web-2", From: app, To: web, Ports: []Port{
			{Proto: "tcp", Lo: 443, Hi: 443}, {Proto: "udp", Lo: 65534, Hi: 65535}}},
	}
	if !reflect.DeepEqual(rules, wantRules) {
		t.Errorf("rules =\n%+v\nwant\n%+v", rules, wantRules)
	}

	wantReasons := []struct{ name, reason string }{
		{"bare-1", "source bare-1 is in no segment: add tags or segments first"},
		{"ghost-1", "source ghost-1 is in no segment: add tags or segments first"},
		{"web-1", "destination (unknown node) is in no segment: add tags or segments first"},
		{"web-1", `protocol "sctp" can only be allowed by "any": write such a rule by hand if you mean it`},
		{"web-1", "tcp port 0 cannot be allowed by a policy"},
		{"web-1", "the policy test at line 16 expects web -> db tcp/22 to be denied"},
		{"tagged-1", "source tagged-1 is in no segment: add tags or segments first"},
	}
	if len(unplaced) != len(wantReasons) {
		t.Fatalf("unplaceable = %+v, want %d entries", unplaced, len(wantReasons))
	}
	for i, w := range wantReasons {
		if unplaced[i].SrcName != w.name || unplaced[i].Reason != w.reason {
			t.Errorf("unplaceable[%d] = %s: %q, want %s: %q", i, unplaced[i].SrcName, unplaced[i].Reason, w.name, w.reason)
		}
	}
	if !reflect.DeepEqual(unplaced[3].Observed, flows[14]) {
		t.Errorf("unplaceable[3] carries %+v, want the flow %+v", unplaced[3].Observed, flows[14])
	}

	// The order of the flows does not matter.
	rev := make([]Observed, len(flows))
	for i := range flows {
		rev[len(flows)-1-i] = flows[i]
	}
	if again, _ := Suggest(p, rev); !reflect.DeepEqual(again, rules) {
		t.Errorf("reversed flows give\n%+v\nwant\n%+v", again, rules)
	}

	// Applied, the suggestions leave nothing to suggest, keep the tests
	// passing, and the same flows stay unplaceable.
	content, err := p.WithRules(rules)
	if err != nil {
		t.Fatalf("WithRules: %v", err)
	}
	p2 := polMustParse(t, string(content))
	for _, w := range []string{
		"\n  # tcp/5432, tcp/5435, udp/53 from denied flows (enforce mode): check they are wanted\n  - name: suggested-web-to-db\n",
		"\n  # from denied flows (enforce mode): check they are wanted\n  - name: suggested-web+app-to-db\n",
		"\n    ports: [tcp/1]\n  - name: suggested-app-to-web-2\n",
	} {
		if !strings.Contains(string(content), w) {
			t.Errorf("WithRules lacks %q:\n%s", w, content)
		}
	}
	if fails := p2.RunTests(); len(fails) != 0 {
		t.Errorf("tests fail with the suggestions: %v", fails)
	}
	again, unplacedAgain := Suggest(p2, flows)
	if len(again) != 0 {
		t.Errorf("second Suggest = %+v, want nothing", again)
	}
	if len(unplacedAgain) != len(unplaced) {
		t.Errorf("second Suggest unplaceable = %+v, want %d", unplacedAgain, len(unplaced))
	}
}

func TestSuggestEdges(t *testing.T) {
	p := polMustParse(t, suggestPolicy)
	t.Run("no flows", func(t *testing.T) {
		rules, unplaced := Suggest(p, nil)
		if rules != nil || unplaced != nil {
			t.Errorf("Suggest(nil) = %+v, %+v", rules, unplaced)
		}
	})
	t.Run("only allowed flows", func(t *testing.T) {
		rules, unplaced := Suggest(p, []Observed{suggestObs([]string{"web"}, "w", []string{"app"}, "a", "tcp", 8080)})
		if rules != nil || unplaced != nil {
			t.Errorf("Suggest = %+v, %+v", rules, unplaced)
		}
	})
	t.Run("audit mode is not an allow", func(t *testing.T) {
		f := suggestObs([]string{"web"}, "w", []string{"app"}, "a", "tcp", 8081)
		f.Audited = true
		rules, _ := Suggest(p, []Observed{f})
		if len(rules) != 1 || rules[0].Ports[0] != (Port{Proto: "tcp", Lo: 8081, Hi: 8081}) {
			t.Errorf("Suggest = %+v, want one rule for tcp/8081", rules)
		}
	})
	t.Run("nil policy", func(t *testing.T) {
		rules, unplaced := Suggest(nil, []Observed{suggestObs([]string{"web"}, "w", []string{"app"}, "a", "tcp", 1)})
		if rules != nil || len(unplaced) != 1 {
			t.Errorf("Suggest(nil policy) = %+v, %+v", rules, unplaced)
		}
	})
	t.Run("names stay unique", func(t *testing.T) {
		// Segment "a+b" and the pair {a, b} would both be "suggested-a+b-to-c".
		p := polMustParse(t, yamlLines(
			"segments: {a: {r: a}, b: {r: b}, a+b: {r: ab}, c: {r: c}}",
			"rules: [{name: suggested-a+b-to-c-2, from: [a], to: [a], ports: [icmp]}]",
		))
		rules, _ := Suggest(p, []Observed{
			suggestObs([]string{"a+b"}, "x", []string{"c"}, "y", "icmp", 0),
			suggestObs([]string{"a", "b"}, "x", []string{"c"}, "y", "icmp", 0),
		})
		var names []string
		for _, r := range rules {
			names = append(names, r.Name)
		}
		if want := []string{"suggested-a+b-to-c", "suggested-a+b-to-c-3"}; !reflect.DeepEqual(names, want) {
			t.Errorf("names = %q, want %q", names, want)
		}
		if _, err := p.WithRules(rules); err != nil {
			t.Errorf("WithRules: %v", err)
		}
	})
}

func TestRenderRules(t *testing.T) {
	rules := []Rule{
		{Name: "suggested-web-to-db", From: []string{"web"}, To: []string{"db", "*"}, Ports: []Port{{Proto: "tcp", Lo: 5432, Hi: 5433}, {Proto: "icmp"}}},
		{Name: "yes", From: []string{"on"}, To: []string{"1"}, Ports: []Port{{Proto: "any"}}},
	}
	rules[0].Comment = "from denied flows\n(enforce mode)"
	want := strings.Join([]string{
		"  # from denied flows (enforce mode)",
		"  - name: suggested-web-to-db",
		"    from: [web]",
		"    to: [db, '*']",
		"    ports: [tcp/5432-5433, icmp]",
		"  - name: yes",
		"    from: [on]",
		`    to: ["1"]`,
		"    ports: [any]",
		"",
	}, "\n")
	got := RenderRules(rules)
	if got != want {
		t.Fatalf("RenderRules =\n%s\nwant\n%s", got, want)
	}
	// It parses back under a rules key, awkward names included (the
	// comment is not read back).
	src := "segments: {web: {role: web}, db: {role: db}, 'on': {x: y}, '1': {x: z}}\nrules:\n" + got
	p := polMustParse(t, src)
	stripPositions(p)
	rules[0].Comment = ""
	if !reflect.DeepEqual(p.Rules, rules) {
		t.Errorf("parsed back:\n%+v\nwant\n%+v", p.Rules, rules)
	}
	if RenderRules(nil) != "" {
		t.Errorf("RenderRules(nil) = %q", RenderRules(nil))
	}
}

func TestWithRules(t *testing.T) {
	p := polMustParse(t, suggestPolicy)
	extra := []Rule{{Name: "more", From: []string{"db"}, To: []string{"*"}, Ports: []Port{{Proto: "udp", Lo: 1, Hi: 9}}}}
	content, err := p.WithRules(extra)
	if err != nil {
		t.Fatalf("WithRules: %v", err)
	}
	got := polMustParse(t, string(content))
	want := polMustParse(t, suggestPolicy)
	want.Rules = append(want.Rules, extra...)
	for _, q := range []*Policy{got, want} {
		stripPositions(q)
		for i := range q.Tests {
			q.Tests[i].Pos = Pos{}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("WithRules content:\n%s\nparses to\n%+v\nwant\n%+v", content, got, want)
	}
	if len(p.Rules) != 2 {
		t.Errorf("WithRules changed the policy: %d rules", len(p.Rules))
	}

	t.Run("invalid extras are errors", func(t *testing.T) {
		for _, bad := range [][]Rule{
			{{Name: "x", From: []string{"ghost"}, To: []string{"web"}, Ports: []Port{{Proto: "icmp"}}}},
			{{Name: "web-to-app", From: []string{"web"}, To: []string{"web"}, Ports: []Port{{Proto: "icmp"}}}},
			{{Name: "x", From: []string{"web"}, To: []string{"web"}}},
		} {
			if out, err := p.WithRules(bad); err == nil {
				t.Errorf("WithRules(%+v) = %s, want an error", bad, out)
			}
		}
	})
	t.Run("nil policy", func(t *testing.T) {
		out, err := (*Policy)(nil).WithRules([]Rule{{Name: "all", From: []string{"*"}, To: []string{"*"}, Ports: []Port{{Proto: "any"}}}})
		if err != nil {
			t.Fatal(err)
		}
		want := "mode: enforce\nrules:\n  - name: all\n    from: ['*']\n    to: ['*']\n    ports: [any]\n"
		if string(out) != want {
			t.Errorf("WithRules =\n%s\nwant\n%s", out, want)
		}
	})
}
