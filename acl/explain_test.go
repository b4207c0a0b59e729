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
			if len(got.Trace) != len(p.Rules) {
				t.Errorf("%d rule traces for %d rules", len(got.Trace), len(p.Rules))
			}
			got.Trace = nil // TestExplainTrace
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
		got.Trace = nil
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

func TestExplainTrace(t *testing.T) {
	p := polMustParse(t, langPolicy)
	api := polMember("api", "100.80.0.2", "", map[string]string{"role": "app", "svc": "api"})
	db := polMember("db", "100.80.0.3", "", map[string]string{"role": "db", "env": "prod"})
	dev := polMember("dev", "100.80.0.4", "", map[string]string{"role": "db", "env": "dev", "canary": "yes"})
	term := func(term string, match bool, tag string, present bool, value string) TermTrace {
		return TermTrace{Term: term, Match: match, Tag: tag, Present: present, Value: value}
	}
	apiSeg := SegmentTrace{Segment: "api", Match: true, Terms: []TermTrace{term("role: app", true, "role", true, "app"), term("svc: api", true, "svc", true, "api")}}
	star := SegmentTrace{Segment: "*", Match: true}

	t.Run("allowed by a built-in service", func(t *testing.T) {
		v := Explain(p, api, db, "tcp", 5432)
		if !v.Allow || !reflect.DeepEqual(v.Rules, []string{"api-db"}) {
			t.Fatalf("verdict %+v", v)
		}
		want := RuleTrace{Rule: "api-db", Allow: true, FromMatch: true, ToMatch: true, Entry: "postgres", Service: "postgres", Entries: []string{"postgres"},
			From: []SegmentTrace{apiSeg},
			To: []SegmentTrace{{Segment: "prod-db", Match: true, Terms: []TermTrace{
				term("env: [prod, staging]", true, "env", true, "prod"), term("role: db", true, "role", true, "db")}}},
		}
		if !reflect.DeepEqual(v.Trace[1], want) {
			t.Errorf("trace of api-db =\n%+v\nwant\n%+v", v.Trace[1], want)
		}
		// web-in: from "*" matches, to stable does not (role), port does not.
		webIn := RuleTrace{Rule: "web-in", FromMatch: true, Entries: []string{"web", "icmp"},
			From: []SegmentTrace{star},
			To: []SegmentTrace{{Segment: "stable", Terms: []TermTrace{
				term(`"!canary": "*"`, true, "canary", false, ""), term("role: web", false, "role", true, "db")}}},
		}
		if !reflect.DeepEqual(v.Trace[0], webIn) {
			t.Errorf("trace of web-in =\n%+v\nwant\n%+v", v.Trace[0], webIn)
		}
	})

	t.Run("a list term fails on another value", func(t *testing.T) {
		v := Explain(p, api, dev, "tcp", 5432)
		if v.Allow {
			t.Fatalf("verdict %+v", v)
		}
		tr := v.Trace[1]
		if tr.Allow || !tr.FromMatch || tr.ToMatch || tr.Entry != "postgres" {
			t.Errorf("trace of api-db %+v", tr)
		}
		wantTo := []SegmentTrace{{Segment: "prod-db", Terms: []TermTrace{
			term("env: [prod, staging]", false, "env", true, "dev"), term("role: db", true, "role", true, "db")}}}
		if !reflect.DeepEqual(tr.To, wantTo) {
			t.Errorf("to = %+v, want %+v", tr.To, wantTo)
		}
		// The negated term fails on a node that has the tag.
		if got := v.Trace[0].To[0].Terms[0]; got != term(`"!canary": "*"`, false, "canary", true, "yes") {
			t.Errorf("!canary on dev: %+v", got)
		}
	})

	t.Run("a named service and a plain port entry", func(t *testing.T) {
		tagged := polMember("t", "100.80.0.5", "", map[string]string{"team": "x"})
		v := Explain(p, tagged, db, "tcp", 9105)
		if tr := v.Trace[2]; !tr.Allow || tr.Entry != "metrics" || tr.Service != "metrics" {
			t.Errorf("scrape on 9105: %+v", tr)
		}
		v = Explain(p, tagged, db, "tcp", 9999)
		if tr := v.Trace[2]; !tr.Allow || tr.Entry != "tcp/9999" || tr.Service != "" {
			t.Errorf("scrape on 9999: %+v", tr)
		}
		v = Explain(p, api, db, "tcp", 9105)
		if tr := v.Trace[2]; tr.Allow || tr.FromMatch || tr.From[0].Terms[0] != term(`team: "*"`, false, "team", false, "") {
			t.Errorf("scrape from api: %+v", tr)
		}
	})

	t.Run("trace agrees with the verdict", func(t *testing.T) {
		nodes := []Member{api, db, dev, polMember("bare", "100.80.0.9", "", nil)}
		for _, from := range nodes {
			for _, to := range nodes {
				for _, fl := range []Port{{"tcp", 5432, 5432}, {"tcp", 443, 443}, {"tcp", 9100, 9100}, {Proto: "icmp"}, {"udp", 53, 53}} {
					v := Explain(p, from, to, fl.Proto, fl.Lo)
					var allowing []string
					for _, tr := range v.Trace {
						if tr.Allow {
							allowing = append(allowing, tr.Rule)
						}
					}
					if !reflect.DeepEqual(allowing, v.Rules) {
						t.Errorf("%s -> %s %s: trace allows %v, verdict %v", from.Name, to.Name, fl, allowing, v.Rules)
					}
				}
			}
		}
	})
}

func TestFlowPort(t *testing.T) {
	p := polMustParse(t, langPolicy)
	cases := []struct {
		in, port, svc, err string
	}{
		{"tcp/5432", "tcp/5432", "", ""},
		{"icmp", "icmp", "", ""},
		{"postgres", "tcp/5432", "postgres", ""},
		{"node-exporter", "tcp/9100", "node-exporter", ""},
		{"tcp/1-2", "", "", "give one protocol and port, e.g. tcp/5432 or icmp"},
		{"any", "", "", "give one protocol and port, e.g. tcp/5432 or icmp"},
		{"web", "", "", `service "web" is 2 ports (tcp/80, tcp/443): give one flow, e.g. tcp/80`},
		{"metrics", "", "", `service "metrics" is the entry tcp/9100-9110: give one flow, e.g. tcp/9100`},
		{"nope", "", "", `unknown service "nope" (want a service of the policy or a built-in one: ` + builtinList + `; or a port such as tcp/5432)`},
	}
	for _, tc := range cases {
		pt, svc, err := p.FlowPort(tc.in)
		switch {
		case tc.err != "":
			if err == nil || err.Error() != tc.err {
				t.Errorf("FlowPort(%q) error %v, want %q", tc.in, err, tc.err)
			}
		case err != nil || pt.String() != tc.port || svc != tc.svc:
			t.Errorf("FlowPort(%q) = %s %q %v, want %s %q", tc.in, pt, svc, err, tc.port, tc.svc)
		}
	}
	if _, _, err := (*Policy)(nil).FlowPort("web"); err == nil {
		t.Error("a nil policy knows service web")
	}
	if pt, svc, err := (*Policy)(nil).FlowPort("ssh"); err != nil || pt.String() != "tcp/22" || svc != "ssh" {
		t.Errorf("nil policy, ssh: %s %q %v", pt, svc, err)
	}
}
