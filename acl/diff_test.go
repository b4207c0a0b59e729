package acl

import (
	"reflect"
	"strings"
	"testing"
)

const diffOld = `mode: audit
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
  old: {role: old}
rules:
  - {name: web-to-app, from: [web], to: [app], ports: [tcp/8080]}
  - {name: app-to-db, from: [app], to: [db], ports: [tcp/5432]}
  - {name: ping, from: ['*'], to: ['*'], ports: [icmp]}
  - {name: same, from: [web, app], to: [db], ports: [tcp/1, tcp/2, udp/5]}
  - {name: gone, from: [old], to: [db], ports: [any]}
`

const diffNew = `mode: enforce
segments:
  web: {role: web}
  db:  {role: db, env: prod}
  app: {role: app}
  cache: {role: cache}
rules:
  - {name: app-to-db, from: [app], to: [db], ports: [tcp/5432-5433]}
  - {name: same, from: [app, web, app], to: [db], ports: [udp/5, tcp/1-2]}
  - {name: web-to-app, from: [web, cache], to: [app, db], ports: [tcp/8080]}
  - {name: ping, from: ['*'], to: ['*'], ports: [icmp]}
  - {name: cache-in, from: [app], to: [cache], ports: [tcp/6379]}
`

func TestDiff(t *testing.T) {
	oldP, newP := polMustParse(t, diffOld), polMustParse(t, diffNew)
	rules, segs, mode := Diff(oldP, newP)

	type change struct{ kind, name string }
	var gotRules []change
	for _, c := range rules {
		gotRules = append(gotRules, change{c.Kind, c.Name})
		if (c.Old == nil) != (c.Kind == ChangeAdded) || (c.New == nil) != (c.Kind == ChangeRemoved) {
			t.Errorf("rule change %+v: Old/New do not fit the kind", c)
		}
	}
	wantRules := []change{{"changed", "web-to-app"}, {"changed", "app-to-db"}, {"removed", "gone"}, {"added", "cache-in"}}
	if !reflect.DeepEqual(gotRules, wantRules) {
		t.Errorf("rule changes = %v, want %v", gotRules, wantRules)
	}
	if rules[1].Old.Ports[0] != (Port{Proto: "tcp", Lo: 5432, Hi: 5432}) || rules[1].New.Ports[0] != (Port{Proto: "tcp", Lo: 5432, Hi: 5433}) {
		t.Errorf("app-to-db change = %+v -> %+v", rules[1].Old, rules[1].New)
	}
	rules[1].Old.Ports[0].Lo = 1 // copies, not the policies' rules
	if oldP.Rules[1].Ports[0].Lo != 5432 {
		t.Error("RuleChange.Old aliases the old policy")
	}
	rules[1].Old.Ports[0].Lo = 5432

	var gotSegs []change
	for _, c := range segs {
		gotSegs = append(gotSegs, change{c.Kind, c.Name})
	}
	wantSegs := []change{{"changed", "db"}, {"removed", "old"}, {"added", "cache"}}
	if !reflect.DeepEqual(gotSegs, wantSegs) {
		t.Errorf("segment changes = %v, want %v", gotSegs, wantSegs)
	}
	if mode != "audit -> enforce" {
		t.Errorf("mode change = %q", mode)
	}

	want := strings.Join([]string{
		"~ mode: audit -> enforce",
		"~ segment db: {role: db} -> {env: prod, role: db}",
		"- segment old: {role: old}",
		"+ segment cache: {role: cache}",
		"~ rule web-to-app: from [web] -> [web, cache]; to [app] -> [app, db]",
		"~ rule app-to-db: ports [tcp/5432] -> [tcp/5432-5433]",
		"- rule gone: from [old] to [db] ports [any]",
		"+ rule cache-in: from [app] to [cache] ports [tcp/6379]",
		"newly denied flows:",
		"  web-1 (web) -> db-1 (db) tcp/5432: would be denied, 120 packets seen",
		"  (unknown node) (no segment) -> app-1 (app) icmpv6: would be denied, 1 packet seen",
		"  x (web) -> y (app) proto 47: would be denied",
		"",
	}, "\n")
	denied := []Observed{
		{SrcName: "web-1", SrcSegments: []string{"web"}, DstName: "db-1", DstSegments: []string{"db"}, Proto: "tcp", Port: 5432, Count: 120},
		{DstName: "app-1", DstSegments: []string{"app"}, Proto: "icmpv6", Count: 1},
		{SrcName: "x", SrcSegments: []string{"web"}, DstName: "y", DstSegments: []string{"app"}, Proto: "47"},
	}
	if got := FormatDiff(rules, segs, mode, denied); got != want {
		t.Errorf("FormatDiff =\n%s\nwant\n%s", got, want)
	}

	t.Run("same policy", func(t *testing.T) {
		rules, segs, mode := Diff(oldP, polMustParse(t, diffOld))
		if rules != nil || segs != nil || mode != "" {
			t.Errorf("Diff(p, p) = %+v, %+v, %q", rules, segs, mode)
		}
		if got := FormatDiff(rules, segs, mode, nil); got != "no changes\n" {
			t.Errorf("FormatDiff = %q", got)
		}
	})
	t.Run("nil policies", func(t *testing.T) {
		rules, segs, mode := Diff(nil, oldP)
		if len(rules) != 5 || len(segs) != 4 || mode != "enforce -> audit" {
			t.Errorf("Diff(nil, p) = %+v, %+v, %q", rules, segs, mode)
		}
		for _, c := range rules {
			if c.Kind != ChangeAdded {
				t.Errorf("Diff(nil, p): %+v", c)
			}
		}
		rules, segs, mode = Diff(newP, nil)
		if len(rules) != 5 || len(segs) != 4 || mode != "" || rules[0].Kind != ChangeRemoved {
			t.Errorf("Diff(p, nil) = %+v, %+v, %q", rules, segs, mode)
		}
		if rules, segs, mode := Diff(nil, nil); rules != nil || segs != nil || mode != "" {
			t.Errorf("Diff(nil, nil) = %+v, %+v, %q", rules, segs, mode)
		}
	})
	t.Run("only the mode", func(t *testing.T) {
		a := polMustParse(t, "mode: enforce\n")
		b := polMustParse(t, "mode: audit\n")
		if _, _, mode := Diff(a, b); mode != "enforce -> audit" {
			t.Errorf("mode change = %q", mode)
		}
		if _, _, mode := Diff(&Policy{}, a); mode != "" {
			t.Errorf("empty mode vs enforce: %q", mode)
		}
	})
}

func TestNewlyDenied(t *testing.T) {
	base := yamlLines(
		"mode: enforce",
		"segments: {web: {role: web}, app: {role: app}, db: {role: db}}",
		"rules:",
		"  - {name: web-to-app, from: [web], to: [app], ports: [tcp/8080-8081]}",
		"  - {name: app-to-db, from: [app], to: [db], ports: [tcp/5432]}",
	)
	webApp := Observed{SrcName: "web-1", SrcSegments: []string{"web"}, DstName: "app-1", DstSegments: []string{"app"}, Proto: "tcp", Port: 8081, Count: 3}
	appDB := Observed{SrcName: "app-1", SrcSegments: []string{"app"}, DstName: "db-1", DstSegments: []string{"db"}, Proto: "tcp", Port: 5432, Count: 9}
	webDB := Observed{SrcName: "web-1", SrcSegments: []string{"web"}, DstName: "db-1", DstSegments: []string{"db"}, Proto: "tcp", Port: 5432, Count: 2}
	flows := []Observed{webApp, appDB, webDB}
	audited := func(o Observed) Observed { o.Audited = true; return o }

	cases := []struct {
		name     string
		old, new string
		flows    []Observed
		want     []Observed
	}{
		{"identical", base, base, flows, nil},
		{"stricter port range cuts a flow", base,
			strings.Replace(base, "tcp/8080-8081", "tcp/8080", 1), flows, []Observed{webApp}},
		{"removed rule", base,
			strings.Replace(base, "  - {name: app-to-db, from: [app], to: [db], ports: [tcp/5432]}\n", "", 1), flows, []Observed{appDB}},
		{"looser file cuts nothing", base,
			strings.Replace(base, "ports: [tcp/5432]", "ports: [tcp/1-65535, icmp]", 1), flows, nil},
		{"denied flow stays denied", base, base, []Observed{webDB}, nil},
		{"audit to enforce cuts audited flows the rules deny",
			strings.Replace(base, "mode: enforce", "mode: audit", 1), base,
			[]Observed{webApp, audited(webDB), appDB}, []Observed{audited(webDB)}},
		{"audit to enforce: unmarked flows are evaluated against the old mode",
			strings.Replace(base, "mode: enforce", "mode: audit", 1), base,
			[]Observed{webDB}, []Observed{webDB}},
		{"audited flow allowed by the new rules", strings.Replace(base, "mode: enforce", "mode: audit", 1),
			strings.Replace(base, "to: [db]", "to: [db, app]", 1),
			[]Observed{audited(Observed{SrcSegments: []string{"app"}, DstSegments: []string{"app"}, Proto: "tcp", Port: 5432})}, nil},
		{"enforce to audit cuts nothing", base,
			"mode: audit\n", flows, nil},
		{"a segment removed", base,
			strings.Replace(strings.Replace(base, ", db: {role: db}", "", 1), "to: [db]", "to: ['*']", 1),
			[]Observed{appDB, {SrcSegments: []string{"app"}, DstSegments: []string{"app"}, Proto: "tcp", Port: 5432}}, nil},
		{"a selector narrowed: tagged flows see it", base,
			strings.Replace(base, "db: {role: db}", "db: {role: db, env: prod}", 1),
			[]Observed{
				{SrcSegments: []string{"app"}, DstTags: map[string]string{"role": "db"}, Proto: "tcp", Port: 5432},
				{SrcSegments: []string{"app"}, DstTags: map[string]string{"role": "db", "env": "prod"}, Proto: "tcp", Port: 5432},
				appDB, // no tags: the segment names are taken as they are
			},
			[]Observed{{SrcSegments: []string{"app"}, DstTags: map[string]string{"role": "db"}, Proto: "tcp", Port: 5432}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := NewlyDenied(polMustParse(t, tc.old), polMustParse(t, tc.new), tc.flows)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("NewlyDenied =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
	t.Run("nil policies", func(t *testing.T) {
		p := polMustParse(t, base)
		if got := NewlyDenied(p, nil, flows); !reflect.DeepEqual(got, []Observed{webApp, appDB}) {
			t.Errorf("to no policy: %+v", got)
		}
		if got := NewlyDenied(nil, p, flows); got != nil {
			t.Errorf("from no policy: %+v", got)
		}
	})
}
