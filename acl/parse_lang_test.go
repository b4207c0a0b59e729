package acl

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// builtinList is the list of built-in names every unknown-service error ends with.
const builtinList = "ssh, http, https, dns, ntp, postgres, mysql, redis, mongodb, kafka, etcd, prometheus, node-exporter"

// langErrorCases are policies using services and set-based selectors
// wrongly, with every error Parse must report, exactly, in order.
var langErrorCases = []struct {
	name string
	src  string
	want []string // "file:line:col: message", exact
}{
	{"unknown service in a rule", yamlLines(
		"services:",
		"  web: [tcp/80, tcp/443]",
		"segments:",
		"  a: {role: a}",
		"rules:",
		"  - {name: r, from: [a], to: [a], ports: [tcp/1, postgress, webb]}",
	), []string{
		`p.yaml:6:50: unknown service "postgress" (want a service defined under services, or a built-in one: ` + builtinList + `; or a port such as tcp/80)`,
		`p.yaml:6:61: unknown service "webb" (want a service defined under services, or a built-in one: ` + builtinList + `; or a port such as tcp/80)`,
	}},
	{"unknown service in a test", yamlLines(
		"segments:",
		"  a: {role: a}",
		"tests:",
		"  - {from: a, to: a, port: pg, expect: allow}",
	), []string{
		`p.yaml:4:28: unknown service "pg" (want a service defined under services, or a built-in one: ` + builtinList + `; or a port such as tcp/80)`,
	}},
	{"a service refers to a built-in only", yamlLines(
		"services:",
		"  web: [http, https]",
		"  both: [web, ssh]",
	), []string{
		`p.yaml:3:10: unknown service "web" (want a built-in service: ` + builtinList + `; or a port such as tcp/80)`,
	}},
	{"a broken service is reported once", yamlLines(
		"services:",
		"  web: [tcp/0]",
		"segments:",
		"  a: {role: a}",
		"rules:",
		"  - {name: r, from: [a], to: [a], ports: [web]}",
	), []string{
		`p.yaml:2:9: "tcp/0": port 0 outside 1-65535`,
	}},
	{"empty service", yamlLines(
		"services:",
		"  web: []",
	), []string{
		`p.yaml:2:8: service "web" is empty`,
	}},
	{"empty value lists", yamlLines(
		"segments:",
		"  a: {role: []}",
		"  b: {role: b, \"!env\": []}",
	), []string{
		`p.yaml:2:13: tag "role" in the selector of segment "a" is an empty list (it would match no node); give at least one value, or "*"`,
		`p.yaml:3:24: tag "!env" in the selector of segment "b" is an empty list (it would match no node); give at least one value, or "*"`,
	}},
	{"negated key with an empty value", yamlLines(
		"segments:",
		"  a: {role: a, \"!env\": \"\"}",
		"  b: {role: b, \"!env\": }",
		"  c: {role: c, \"!env\": [x, \"\"]}",
		"  d: {\"!\": x}",
	), []string{
		`p.yaml:2:24: "!env" has an empty value: write "*" (tag absent), a value or a list of values`,
		`p.yaml:3:24: "!env" has an empty value: write "*" (tag absent), a value or a list of values`,
		`p.yaml:4:28: "!env" has an empty value in its list`,
		`p.yaml:5:7: selector key "!" names no tag (write "!TAG", e.g. "!canary": "*")`,
	}},
	{"contradictory selectors", yamlLines(
		"segments:",
		"  a: {a: x, \"!a\": \"*\"}",
		"  b: {b: [x, y], \"!b\": [y, x, z]}",
		"  c: {c: \"*\", \"!c\": \"*\"}",
		"  d: {d: x, \"!d\": x}",
	), []string{
		`p.yaml:2:13: segment "a" can never match: {a: x, "!a": "*"} requires tag "a" and its absence`,
		`p.yaml:3:18: segment "b" can never match: {b: [x, y], "!b": [x, y, z]} excludes every value it allows for tag "b"`,
		`p.yaml:4:15: segment "c" can never match: {c: "*", "!c": "*"} requires tag "c" and its absence`,
		`p.yaml:5:13: segment "d" can never match: {d: x, "!d": x} excludes every value it allows for tag "d"`,
	}},
	{"star inside a list", yamlLines(
		"segments:",
		"  a: {team: [x, \"*\"]}",
	), []string{
		`p.yaml:2:17: "*" in a list of values: write "team": "*" for any value`,
	}},
	{"duplicate service names", yamlLines(
		"services:",
		"  web: [tcp/80]",
		"  web: [tcp/81]",
	), []string{
		`p.yaml:3:3: duplicate key "web" in services (first at line 2)`,
	}},
	{"a service shadowing a built-in", yamlLines(
		"services:",
		"  postgres: [tcp/5433]",
		"  ssh: [tcp/2222]",
	), []string{
		`p.yaml:2:3: service "postgres" is built in and cannot be redefined (built-ins: ` + builtinList + `)`,
		`p.yaml:3:3: service "ssh" is built in and cannot be redefined (built-ins: ` + builtinList + `)`,
	}},
	{"service names that read as ports", yamlLines(
		"services:",
		"  tcp: [tcp/5433]",
		"  a/b: [tcp/1]",
		"  1x: [tcp/1]",
	), []string{
		`p.yaml:2:3: service name "tcp" clashes with the protocol "tcp" (port entries use it)`,
		`p.yaml:3:3: service name "a/b" clashes with port syntax (no '/' in a service name)`,
		`p.yaml:4:3: service name "1x" is not a name (start with a letter; letters, digits, '-', '_', '.')`,
	}},
	{"services of the wrong kind", yamlLines(
		"services: [tcp/1]",
	), []string{
		`p.yaml:1:11: services must be a mapping, got a list`,
	}},
	{"a test port naming a multi-port service", yamlLines(
		"services:",
		"  web: [tcp/80, tcp/443]",
		"segments:",
		"  a: {role: a}",
		"tests:",
		"  - {from: a, to: a, port: web, expect: allow}",
		"  - {from: a, to: a, port: dns, expect: allow}",
		"  - {from: a, to: a, port: etcd, expect: allow}",
	), []string{
		`p.yaml:6:28: test port "web" is a service of 2 ports (tcp/80, tcp/443); a test checks one flow: name a service of one port, or write tcp/PORT, udp/PORT or icmp`,
		`p.yaml:7:28: test port "dns" is a service of 2 ports (udp/53, tcp/53); a test checks one flow: name a service of one port, or write tcp/PORT, udp/PORT or icmp`,
		`p.yaml:8:28: test port "etcd" is a service of the entry tcp/2379-2380; a test checks one flow: name a service of one port, or write tcp/PORT, udp/PORT or icmp`,
	}},
}

func TestParseLangErrors(t *testing.T) {
	for _, tc := range langErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := Parse("p.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", pol)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList: %v", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			if !slices.Equal(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// langPolicy is the design doc's example.
const langPolicy = `services:                       # named port sets, usable wherever a port entry is
  web: [tcp/80, tcp/443]
  metrics: [tcp/9100-9110]
segments:
  prod-db:  {role: db, env: [prod, staging]}   # a list: the tag is one of them
  tagged:   {team: "*"}                        # "*": the tag is present, any value
  stable:   {role: web, "!canary": "*"}        # "!key": "*" = tag absent; a value or list = not one of them
  api:      {role: app, svc: api}
  not-prod: {"!env": prod}
  outside:  {"!env": [prod, staging]}
rules:
  - {name: web-in, from: ["*"], to: [stable], ports: [web, icmp]}
  - {name: api-db, from: [api], to: [prod-db], ports: [postgres]}   # built-in service name
  - {name: scrape, from: [tagged], to: ["*"], ports: [metrics, node-exporter, tcp/9999]}
tests:
  - {from: api, to: prod-db, port: postgres, expect: allow}         # a service of exactly one port
  - {from: api, to: prod-db, port: mysql, expect: deny}
  - {from: tagged, to: api, port: node-exporter, expect: allow}
  - {from: "*", to: stable, port: https, expect: allow}
`

func TestSelectorForms(t *testing.T) {
	p := polMustParse(t, langPolicy)
	cases := []struct {
		name string
		tags map[string]string
		want []string
	}{
		{"list: one of the values", map[string]string{"role": "db", "env": "prod"}, []string{"prod-db"}},
		{"list: the other value", map[string]string{"role": "db", "env": "staging"}, []string{"not-prod", "prod-db"}},
		{"list: a value not listed", map[string]string{"role": "db", "env": "dev"}, []string{"not-prod", "outside"}},
		{"list: tag absent", map[string]string{"role": "db"}, []string{"not-prod", "outside"}},
		{"star: any value", map[string]string{"team": "blue"}, []string{"not-prod", "outside", "tagged"}},
		{"star: empty value is still present", map[string]string{"team": ""}, []string{"not-prod", "outside", "tagged"}},
		{"not star: tag absent", map[string]string{"role": "web"}, []string{"not-prod", "outside", "stable"}},
		{"not star: tag present", map[string]string{"role": "web", "canary": "yes"}, []string{"not-prod", "outside"}},
		{"not star: present with an empty value", map[string]string{"role": "web", "canary": ""}, []string{"not-prod", "outside"}},
		{"not value: env=prod excluded", map[string]string{"env": "prod"}, nil},
		{"not value: a node without env matches", map[string]string{}, []string{"not-prod", "outside"}},
		{"not list: env=staging excluded", map[string]string{"env": "staging"}, []string{"not-prod"}},
		{"plain pairs", map[string]string{"role": "app", "svc": "api", "env": "prod"}, []string{"api"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.SegmentsOf(tc.tags); !slices.Equal(got, tc.want) {
				t.Errorf("SegmentsOf(%v) = %v, want %v", tc.tags, got, tc.want)
			}
		})
	}
}

func TestSelectorParsed(t *testing.T) {
	p := polMustParse(t, langPolicy)
	want := map[string]struct {
		sel   map[string]string
		terms []Term
		str   string
	}{
		"prod-db":  {map[string]string{"role": "db"}, []Term{{Key: "env", Values: []string{"prod", "staging"}, Pos: Pos{5, 24}}}, `{env: [prod, staging], role: db}`},
		"tagged":   {map[string]string{}, []Term{{Key: "team", Pos: Pos{6, 14}}}, `{team: "*"}`},
		"stable":   {map[string]string{"role": "web"}, []Term{{Key: "canary", Not: true, Pos: Pos{7, 25}}}, `{"!canary": "*", role: web}`},
		"not-prod": {map[string]string{}, []Term{{Key: "env", Not: true, Values: []string{"prod"}, Pos: Pos{9, 14}}}, `{"!env": prod}`},
		"outside":  {map[string]string{}, []Term{{Key: "env", Not: true, Values: []string{"prod", "staging"}, Pos: Pos{10, 14}}}, `{"!env": [prod, staging]}`},
	}
	for _, s := range p.Segments {
		w, ok := want[s.Name]
		if !ok {
			continue
		}
		if !reflect.DeepEqual(s.Selector, w.sel) || !reflect.DeepEqual(s.Terms, w.terms) {
			t.Errorf("segment %s: selector %v terms %+v, want %v %+v", s.Name, s.Selector, s.Terms, w.sel, w.terms)
		}
		if got := s.SelectorString(); got != w.str {
			t.Errorf("segment %s: SelectorString %q, want %q", s.Name, got, w.str)
		}
	}
}

func TestServices(t *testing.T) {
	p := polMustParse(t, langPolicy)
	tcp := func(lo, hi uint16) Port { return Port{protoNameTCP, lo, hi} }

	t.Run("built-ins resolve", func(t *testing.T) {
		want := map[string][]Port{
			"ssh": {tcp(22, 22)}, "http": {tcp(80, 80)}, "https": {tcp(443, 443)},
			"dns": {{protoNameUDP, 53, 53}, tcp(53, 53)}, "ntp": {{protoNameUDP, 123, 123}},
			"postgres": {tcp(5432, 5432)}, "mysql": {tcp(3306, 3306)}, "redis": {tcp(6379, 6379)},
			"mongodb": {tcp(27017, 27017)}, "kafka": {tcp(9092, 9092)}, "etcd": {tcp(2379, 2380)},
			"prometheus": {tcp(9090, 9090)}, "node-exporter": {tcp(9100, 9100)},
		}
		if got := len(BuiltinServices()); got != len(want) {
			t.Errorf("%d built-in services, want %d", got, len(want))
		}
		for name, ports := range want {
			for _, pol := range []*Policy{nil, p} {
				s, ok := pol.Service(name)
				if !ok || !slices.Equal(s.Ports, ports) {
					t.Errorf("Service(%q) = %+v %v, want %v", name, s, ok, ports)
				}
			}
		}
		if _, ok := p.Service("nope"); ok {
			t.Error("Service(nope) found")
		}
	})

	t.Run("named services", func(t *testing.T) {
		want := []Service{
			{Name: "web", Ports: []Port{tcp(80, 80), tcp(443, 443)}, Pos: Pos{2, 3}},
			{Name: "metrics", Ports: []Port{tcp(9100, 9110)}, Pos: Pos{3, 3}},
		}
		if !reflect.DeepEqual(p.Services, want) {
			t.Errorf("Services = %+v, want %+v", p.Services, want)
		}
		if s, ok := p.Service("web"); !ok || s.Pos != (Pos{2, 3}) {
			t.Errorf("Service(web) = %+v %v", s, ok)
		}
	})

	t.Run("expanded in rules", func(t *testing.T) {
		want := []struct {
			ports   []Port
			entries []PortEntry
		}{
			{[]Port{tcp(80, 80), tcp(443, 443), {Proto: protoNameICMP}}, []PortEntry{
				{Service: "web", Ports: []Port{tcp(80, 80), tcp(443, 443)}, Pos: Pos{12, 55}},
				{Ports: []Port{{Proto: protoNameICMP}}, Pos: Pos{12, 60}},
			}},
			{[]Port{tcp(5432, 5432)}, []PortEntry{{Service: "postgres", Ports: []Port{tcp(5432, 5432)}, Pos: Pos{13, 56}}}},
			{[]Port{tcp(9100, 9110), tcp(9100, 9100), tcp(9999, 9999)}, []PortEntry{
				{Service: "metrics", Ports: []Port{tcp(9100, 9110)}, Pos: Pos{14, 55}},
				{Service: "node-exporter", Ports: []Port{tcp(9100, 9100)}, Pos: Pos{14, 64}},
				{Ports: []Port{tcp(9999, 9999)}, Pos: Pos{14, 79}},
			}},
		}
		for i, w := range want {
			r := p.Rules[i]
			if !slices.Equal(r.Ports, w.ports) || !reflect.DeepEqual(r.Entries, w.entries) {
				t.Errorf("rule %s: ports %v entries %+v, want %v %+v", r.Name, r.Ports, r.Entries, w.ports, w.entries)
			}
		}
		plain := polMustParse(t, yamlLines("segments: {a: {role: a}}", "rules:", "  - {name: r, from: [a], to: [a], ports: [tcp/1]}"))
		if plain.Rules[0].Entries != nil {
			t.Errorf("a rule without services keeps Entries %+v", plain.Rules[0].Entries)
		}
	})

	t.Run("tests naming a service of one port", func(t *testing.T) {
		want := []Test{
			{From: "api", To: "prod-db", Port: tcp(5432, 5432), Service: "postgres", Expect: "allow", Pos: Pos{16, 5}},
			{From: "api", To: "prod-db", Port: tcp(3306, 3306), Service: "mysql", Expect: "deny", Pos: Pos{17, 5}},
			{From: "tagged", To: "api", Port: tcp(9100, 9100), Service: "node-exporter", Expect: "allow", Pos: Pos{18, 5}},
			{From: "*", To: "stable", Port: tcp(443, 443), Service: "https", Expect: "allow", Pos: Pos{19, 5}},
		}
		if !reflect.DeepEqual(p.Tests, want) {
			t.Errorf("Tests = %+v\nwant %+v", p.Tests, want)
		}
		if f := p.RunTests(); len(f) != 0 {
			t.Errorf("tests fail: %v", f)
		}
		one := polMustParse(t, yamlLines(
			"services: {pg: [tcp/5433]}",
			"segments: {a: {role: a}}",
			"rules: [{name: r, from: [a], to: [a], ports: [pg]}]",
			"tests:",
			"  - {from: a, to: a, port: pg, expect: deny}",
			"  - {from: a, to: a, port: postgres, expect: allow}",
		))
		f := one.RunTests()
		if len(f) != 2 {
			t.Fatalf("failures %v, want 2", f)
		}
		if got, want := f[0].Format("p.yaml"), `p.yaml:5:5: test a -> a pg (tcp/5433): expected deny, got allow (allowed by rule "r")`; got != want {
			t.Errorf("failure = %q, want %q", got, want)
		}
		if got, want := f[1].Format("p.yaml"), `p.yaml:6:5: test a -> a postgres (tcp/5432): expected allow, got deny (no rule allows it)`; got != want {
			t.Errorf("failure = %q, want %q", got, want)
		}
	})
}

// TestLangRoundTrip: rendering a policy (WithRules) keeps services, service
// names in rules and tests, and every selector form; Diff sees no change.
func TestLangRoundTrip(t *testing.T) {
	p := polMustParse(t, langPolicy)
	out, err := p.WithRules(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"services:\n  web: [tcp/80, tcp/443]\n  metrics: [tcp/9100-9110]\n",
		`prod-db: {env: [prod, staging], role: db}`,
		`tagged: {team: '*'}`,
		`stable: {'!canary': '*', role: web}`,
		`not-prod: {'!env': prod}`,
		`outside: {'!env': [prod, staging]}`,
		`ports: [web, icmp]`,
		`ports: [postgres]`,
		`ports: [metrics, node-exporter, tcp/9999]`,
		`{from: api, to: prod-db, port: postgres, expect: allow}`,
	} {
		if !strings.Contains(string(out), w) {
			t.Errorf("rendered policy lacks %q:\n%s", w, out)
		}
	}
	q, err := Parse("rendered", out)
	if err != nil {
		t.Fatalf("rendered policy does not parse: %v\n%s", err, out)
	}
	rules, segs, mode := Diff(p, q)
	if len(rules) != 0 || len(segs) != 0 || mode != "" {
		t.Errorf("Diff(policy, rendered) = %+v %+v %q", rules, segs, mode)
	}
	for i := range p.Segments {
		if !sameSelector(&p.Segments[i], &q.Segments[i]) {
			t.Errorf("segment %s: %s became %s", p.Segments[i].Name, p.Segments[i].SelectorString(), q.Segments[i].SelectorString())
		}
	}
	for i := range p.Rules {
		a, b := p.Rules[i], q.Rules[i]
		if !slices.Equal(a.Ports, b.Ports) || len(a.Entries) != len(b.Entries) {
			t.Errorf("rule %s: %+v became %+v", a.Name, a, b)
		}
		for j := range a.Entries {
			if a.Entries[j].String() != b.Entries[j].String() {
				t.Errorf("rule %s entry %d: %s became %s", a.Name, j, a.Entries[j], b.Entries[j])
			}
		}
	}
	if len(q.Tests) != len(p.Tests) || q.Tests[0].Service != "postgres" {
		t.Errorf("tests became %+v", q.Tests)
	}

	t.Run("a changed selector or service is a diff", func(t *testing.T) {
		src := strings.Replace(langPolicy, `"!canary": "*"`, `"!canary": "yes"`, 1)
		src = strings.Replace(src, "web: [tcp/80, tcp/443]", "web: [tcp/80]", 1)
		src = strings.Replace(src, "- {from: \"*\", to: stable, port: https, expect: allow}\n", "", 1)
		r := polMustParse(t, src)
		rules, segs, _ := Diff(p, r)
		if len(segs) != 1 || segs[0].Name != "stable" || segs[0].Kind != ChangeChanged {
			t.Errorf("segment changes %+v, want stable changed", segs)
		}
		if len(rules) != 1 || rules[0].Name != "web-in" || rules[0].Kind != ChangeChanged {
			t.Errorf("rule changes %+v, want web-in changed", rules)
		}
	})
}

// contractPolicy is the design doc's example, verbatim.
const contractPolicy = `services:                       # named port sets, usable wherever a port entry is
  web: [tcp/80, tcp/443]
  metrics: [tcp/9100-9110]
segments:
  prod-db:  {role: db, env: [prod, staging]}   # a list: the tag is one of them
  tagged:   {team: "*"}                        # "*": the tag is present, any value
  stable:   {role: web, "!canary": "*"}        # "!key": "*" = tag absent; a value or list = not one of them
  api:      {role: app, svc: api}
rules:
  - {name: web-in, from: ["*"], to: [stable], ports: [web, icmp]}
  - {name: api-db, from: [api], to: [prod-db], ports: [postgres]}   # built-in service name
tests:
  - {from: api, to: prod-db, port: postgres, expect: allow}         # a service of exactly one port
`

func TestContractExample(t *testing.T) {
	p := polMustParse(t, contractPolicy)
	if f := p.RunTests(); len(f) != 0 {
		t.Fatalf("tests fail: %v", f)
	}
	api := polMember("api", "100.80.0.2", "", map[string]string{"role": "app", "svc": "api"})
	for _, tc := range []struct {
		to    map[string]string
		port  uint16
		allow []string
	}{
		{map[string]string{"role": "db", "env": "staging"}, 5432, []string{"api-db"}},
		{map[string]string{"role": "db", "env": "dev"}, 5432, nil},
		{map[string]string{"role": "web"}, 443, []string{"web-in"}},
		{map[string]string{"role": "web", "canary": "1"}, 443, nil},
		{map[string]string{"role": "web"}, 8080, nil},
	} {
		v := Explain(p, api, polMember("to", "100.80.0.3", "", tc.to), "tcp", tc.port)
		if !slices.Equal(v.Rules, tc.allow) {
			t.Errorf("api -> %v tcp/%d: allowed by %v, want %v", tc.to, tc.port, v.Rules, tc.allow)
		}
	}
}
