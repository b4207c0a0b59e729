package acl

import (
	"os"
	"reflect"
	"testing"
)

func polExample(t testing.TB) *Policy {
	t.Helper()
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return polMustParse(t, string(data))
}

func TestExplain(t *testing.T) {
	p := polExample(t)
	web := polMember("web", "100.80.0.2", "", map[string]string{"role": "web"})
	app := polMember("app", "100.80.0.3", "", map[string]string{"role": "app", "env": "prod"})
	db := polMember("db", "100.80.0.4", "", map[string]string{"role": "db"})
	bare := polMember("bare", "100.80.0.5", "", nil)

	cases := []struct {
		name     string
		from, to Member
		proto    string
		port     uint16
		want     Verdict
	}{
		{"web to app on 8080", web, app, "tcp", 8080, Verdict{Allow: true, Rules: []string{"web-to-app"}, FromSegments: []string{"web"}, ToSegments: []string{"app"}, Mode: ModeEnforce}},
		{"web to app on another port", web, app, "tcp", 8081, Verdict{FromSegments: []string{"web"}, ToSegments: []string{"app"}, Mode: ModeEnforce}},
		{"web to app over udp", web, app, "udp", 8080, Verdict{FromSegments: []string{"web"}, ToSegments: []string{"app"}, Mode: ModeEnforce}},
		{"web to db", web, db, "tcp", 5432, Verdict{FromSegments: []string{"web"}, ToSegments: []string{"db"}, Mode: ModeEnforce}},
		{"app to db", app, db, "tcp", 5432, Verdict{Allow: true, Rules: []string{"app-to-db"}, FromSegments: []string{"app"}, ToSegments: []string{"db"}, Mode: ModeEnforce}},
		{"ping from a node in no segment", bare, db, "icmp", 0, Verdict{Allow: true, Rules: []string{"ping"}, ToSegments: []string{"db"}, Mode: ModeEnforce}},
		{"icmpv6 counts as icmp", web, bare, "icmpv6", 0, Verdict{Allow: true, Rules: []string{"ping"}, FromSegments: []string{"web"}, Mode: ModeEnforce}},
		{"unknown protocol", web, app, "sctp", 8080, Verdict{FromSegments: []string{"web"}, ToSegments: []string{"app"}, Mode: ModeEnforce}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Explain(p, tc.from, tc.to, tc.proto, tc.port)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Explain =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}

	t.Run("several rules, in file order, audit mode", func(t *testing.T) {
		p := polMustParse(t, yamlLines(
			"mode: audit",
			"segments: {web: {role: web}, app: {role: app}}",
			"rules:",
			"  - {name: z-all, from: ['*'], to: [app], ports: [any]}",
			"  - {name: a-web, from: [web], to: ['*'], ports: [tcp/8000-8100]}",
			"  - {name: other, from: [app], to: [app], ports: [tcp/8080]}",
		))
		got := Explain(p, web, app, "tcp", 8080)
		want := Verdict{Allow: true, Rules: []string{"z-all", "a-web"}, FromSegments: []string{"web"}, ToSegments: []string{"app"}, Mode: ModeAudit}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Explain =\n%+v\nwant\n%+v", got, want)
		}
	})

	t.Run("nil policy allows nothing", func(t *testing.T) {
		got := Explain(nil, web, app, "tcp", 8080)
		if !reflect.DeepEqual(got, Verdict{Mode: ModeEnforce}) {
			t.Errorf("Explain(nil) = %+v", got)
		}
	})
}
