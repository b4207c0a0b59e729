package acl

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// yamlLines joins lines into a policy file (one line per argument, so the
// line numbers in the test tables can be read off the argument index).
func yamlLines(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// parseErrorCases are policy files with problems and the exact errors Parse
// must report: "line:col: substring of the message", in position order.
// FuzzParse uses the sources as seeds.
var parseErrorCases = []struct {
	name string
	src  string
	want []string
}{
	{"unknown top-level key", yamlLines(
		"mode: enforce",
		"colour: blue",
	), []string{`2:1: unknown key "colour" in the policy`}},
	{"unknown rule key", yamlLines(
		"segments:",
		"  web: {role: web}",
		"rules:",
		"  - name: r",
		"    from: [web]",
		"    to: [web]",
		"    port: [tcp/80]",
	), []string{`4:5: rule "r" has no ports`, `7:5: unknown key "port" in a rule`}},
	{"unknown test key", yamlLines(
		"segments:",
		"  web: {role: web}",
		"tests:",
		"  - {from: web, to: web, port: tcp/80, expect: deny, why: x}",
	), []string{`4:54: unknown key "why" in a test`}},
	{"bad mode", yamlLines(
		"mode: strict",
	), []string{`1:7: mode must be "enforce" or "audit", got "strict"`}},
	{"mode not a string", yamlLines(
		"mode: 1",
	), []string{`1:7: mode must be a string, got the number 1`}},
	{"undefined segments", yamlLines(
		"segments:",
		"  web: {role: web}",
		"rules:",
		"  - name: r",
		"    from: [web, wbe]",
		"    to: [db]",
		"    ports: [tcp/80]",
		"tests:",
		"  - {from: web, to: dbx, port: tcp/80, expect: deny}",
		"  - {from: nope, to: '*', port: tcp/80, expect: deny}",
	), []string{
		`5:17: undefined segment "wbe" in from`,
		`6:10: undefined segment "db" in to`,
		`9:21: undefined segment "dbx" in test to`,
		`10:12: undefined segment "nope" in test from`,
	}},
	{"empty selector", yamlLines(
		"segments:",
		"  web: {}",
		"  app:",
	), []string{`2:8: segment "web" has an empty selector`, `3:7: must be a mapping, got nothing (null)`}},
	{"non-string selector values and keys", yamlLines(
		"segments:",
		"  web: {role: 1}",
		"  db: {role: db, prod: true}",
		"  x: {role: ~}",
		"  y: {1: a}",
		"  z: {role: [a, 1]}",
		"  w: role=web",
	), []string{
		`2:15: tag "role" in the selector of segment "web" must be a string, got the number 1`,
		`3:24: tag "prod" in the selector of segment "db" must be a string, got the boolean true`,
		`4:13: must be a string, got nothing (null)`,
		`5:7: a key in the selector of segment "y" must be a string, got the number 1`,
		`6:17: a value of tag "role" in the selector of segment "z" must be a string, got the number 1`,
		`7:6: the selector of segment "w" must be a mapping`,
	}},
	{"bad ports", yamlLines(
		"segments:",
		"  web: {role: web}",
		"rules:",
		"  - name: r",
		"    from: [web]",
		"    to: [web]",
		"    ports: [sctp/1, tcp/0, udp/65536, tcp/9100-9000, tcp, icmp/8, TCP/80, tcp/x, 80, tcp/1-]",
	), []string{
		`7:13: unknown protocol "sctp"`,
		`7:21: port 0 outside 1-65535`,
		`7:28: port 65536 outside 1-65535`,
		`7:39: inverted port range (9100 > 9000)`,
		`7:54: tcp needs a port or range`,
		`7:59: icmp takes no port`,
		`7:67: unknown protocol "TCP"`,
		`7:75: port "x" is not a decimal number`,
		`7:82: a port must be a string, got the number 80`,
		`7:86: missing port number`,
	}},
	{"duplicate names", yamlLines(
		"segments:",
		"  web: {role: web}",
		"  web: {role: w2}",
		"rules:",
		"  - name: a",
		"    from: [web]",
		"    to: [web]",
		"    ports: [icmp]",
		"  - name: a",
		"    from: [web]",
		"    to: [web]",
		"    ports: [icmp]",
	), []string{
		`3:3: duplicate key "web" in segments (first at line 2)`,
		`9:11: duplicate rule name "a" (first at line 5)`,
	}},
	{"empty lists", yamlLines(
		"segments:",
		"  web: {role: web}",
		"rules:",
		"  - {name: r, from: [], to: [], ports: []}",
		"  - {name: s, from: web, to: [web], ports: [any]}",
	), []string{
		`4:21: rule "r" from is empty`,
		`4:29: rule "r" to is empty`,
		`4:40: rule "r" ports is empty`,
		`5:21: rule "s" from must be a list`,
	}},
	{"rule without name or fields", yamlLines(
		"segments:",
		"  web: {role: web}",
		"rules:",
		"  - from: [web]",
		"    to: [web]",
		"    ports: [icmp]",
		"  - {name: ''}",
		"  - name: 7",
		"  - just-a-string",
	), []string{
		`4:5: rule has no name`,
		`7:5: rule has no from`,
		`7:5: rule has no ports`,
		`7:5: rule has no to`,
		`7:12: rule name is empty`,
		`8:5: rule has no from`,
		`8:5: rule has no ports`,
		`8:5: rule has no to`,
		`8:11: rule name must be a string, got the number 7`,
		`9:5: a rule must be a mapping`,
	}},
	{"bad tests", yamlLines(
		"segments:",
		"  web: {role: web}",
		"tests:",
		"  - {from: web, to: web, port: tcp/80, expect: maybe}",
		"  - {from: web, to: web, port: any, expect: deny}",
		"  - {from: web, to: web, port: tcp/1-2, expect: deny}",
		"  - {from: web, to: web}",
	), []string{
		`4:48: expect must be "allow" or "deny", got "maybe"`,
		`5:32: test port "any" must be one flow`,
		`6:32: test port "tcp/1-2" must be one flow`,
		`7:5: test has no expect`,
		`7:5: test has no port`,
	}},
	{"sections of the wrong kind", yamlLines(
		"segments: [web]",
		"rules: {name: r}",
		"tests: yes-please",
	), []string{
		`1:11: segments must be a mapping, got a list`,
		`2:8: rules must be a list, got a mapping`,
		`3:8: tests must be a list`,
	}},
	{"duplicate keys and merge keys", yamlLines(
		"mode: enforce",
		"segments:",
		"  base: &b {role: web}",
		"  web: {<<: *b, env: prod}",
		"mode: audit",
	), []string{
		`4:9: merge keys (<<) are not supported`,
		`5:1: duplicate key "mode" in the policy (first at line 1)`,
	}},
	{"reserved segment name", yamlLines(
		"segments:",
		"  '*': {role: web}",
	), []string{`2:3: "*" is reserved`}},
	{"YAML syntax error", yamlLines(
		"segments:",
		"  web: {role: web",
		"rules: []",
	), []string{`2:1: YAML syntax error: did not find expected ',' or '}'`}},
	{"bare star", yamlLines(
		"rules:",
		"  - name: r",
		"    from: [*]",
	), []string{`3:1: YAML syntax error: did not find expected alphabetic or numeric character (a bare * starts a YAML alias`}},
	{"tab indentation", "mode: enforce\n\tsegments: {}\n", []string{`2:1: YAML syntax error: found a tab character`}},
	{"empty file", "", []string{`1:1: policy file is empty`}},
	{"only comments", "# nothing\n", []string{`1:1: policy file is empty`}},
	{"root is a list", "- mode: enforce\n", []string{`1:1: the policy must be a mapping, got a list`}},
	{"root is a string", "enforce\n", []string{`1:1: the policy must be a mapping, got !!str "enforce"`}},
	{"two documents", "mode: enforce\n---\nmode: audit\n", []string{`2:1: a policy file holds one YAML document, found another`}},
	{"many problems at once", yamlLines(
		"mode: loud",
		"segments:",
		"  web: {}",
		"rules:",
		"  - name: r",
		"    from: [web, nope]",
		"    to: ['*']",
		"    ports: [tcp/0]",
		"tests:",
		"  - {from: web, to: web, port: icmp, expect: allow, extra: 1}",
	), []string{
		`1:7: mode must be "enforce" or "audit"`,
		`3:8: segment "web" has an empty selector`,
		`6:17: undefined segment "nope" in from`,
		`8:13: port 0 outside 1-65535`,
		`10:53: unknown key "extra" in a test`,
	}},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range parseErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := Parse("p.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", pol)
			}
			if pol != nil {
				t.Errorf("Parse returned a policy along with errors")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList: %v", err, err)
			}
			var got []string
			for _, e := range list {
				if e.File != "p.yaml" {
					t.Errorf("error %q names file %q", e, e.File)
				}
				got = append(got, fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i := range got {
				pos, sub, _ := strings.Cut(tc.want[i], ": ")
				if !strings.HasPrefix(got[i], pos+": ") || !strings.Contains(got[i], sub) {
					t.Errorf("error %d = %q, want at %s containing %q", i, got[i], pos, sub)
				}
			}
			if !strings.HasPrefix(err.Error(), "p.yaml:") {
				t.Errorf("Error() = %q, want file:line:col prefix", err.Error())
			}
		})
	}
}

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := Parse("testdata/example.yaml", data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Policy{
		Mode: ModeEnforce,
		Segments: []Segment{
			{Name: "web", Selector: map[string]string{"role": "web"}, Pos: Pos{4, 3}},
			{Name: "app", Selector: map[string]string{"role": "app"}, Pos: Pos{5, 3}},
			{Name: "db", Selector: map[string]string{"role": "db"}, Pos: Pos{6, 3}},
		},
		Rules: []Rule{
			{Name: "web-to-app", From: []string{"web"}, To: []string{"app"}, Ports: []Port{{"tcp", 8080, 8080}}, Pos: Pos{8, 5}},
			{Name: "app-to-db", From: []string{"app"}, To: []string{"db"}, Ports: []Port{{"tcp", 5432, 5432}}, Pos: Pos{12, 5}},
			{Name: "ping", From: []string{"*"}, To: []string{"*"}, Ports: []Port{{Proto: "icmp"}}, Pos: Pos{16, 5}},
		},
	}
	gotTests := pol.Tests
	pol.Tests = nil
	if !reflect.DeepEqual(pol, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", pol, want)
	}
	if len(gotTests) != 6 || gotTests[0] != (Test{From: "web", To: "app", Port: Port{"tcp", 8080, 8080}, Expect: "allow", Pos: Pos{21, 5}}) {
		t.Errorf("tests = %+v", gotTests)
	}
	pol.Tests = gotTests
	if f := pol.RunTests(); len(f) != 0 {
		t.Errorf("example tests fail: %v", f)
	}
}

func TestParseAccepts(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want Policy
	}{
		{"mode only", "mode: audit\n", Policy{Mode: ModeAudit}},
		{"no mode means enforce, null sections", "segments:\nrules: ~\ntests:\n", Policy{Mode: ModeEnforce}},
		{"anchors and aliases", yamlLines(
			"segments:",
			"  web: &sel {role: web}",
			"  web2: *sel",
			"rules:",
			"  - name: r",
			"    from: &all ['*']",
			"    to: *all",
			"    ports: &p [tcp/1-2, any]",
		), Policy{
			Mode: ModeEnforce,
			Segments: []Segment{
				{Name: "web", Selector: map[string]string{"role": "web"}, Pos: Pos{2, 3}},
				{Name: "web2", Selector: map[string]string{"role": "web"}, Pos: Pos{3, 3}},
			},
			Rules: []Rule{{Name: "r", From: []string{"*"}, To: []string{"*"}, Ports: []Port{{"tcp", 1, 2}, {Proto: "any"}}, Pos: Pos{5, 5}}},
		}},
		{"rules before segments, quoted numbers", yamlLines(
			"rules:",
			"  - {name: r, from: [web], to: [web], ports: [udp/53, tcp/65535]}",
			"segments:",
			"  web: {role: web, rack: '7'}",
			"tests:",
			"  - {from: '*', to: web, port: udp/53, expect: deny}",
		), Policy{
			Mode:     ModeEnforce,
			Segments: []Segment{{Name: "web", Selector: map[string]string{"role": "web", "rack": "7"}, Pos: Pos{4, 3}}},
			Rules:    []Rule{{Name: "r", From: []string{"web"}, To: []string{"web"}, Ports: []Port{{"udp", 53, 53}, {"tcp", 65535, 65535}}, Pos: Pos{2, 5}}},
			Tests:    []Test{{From: "*", To: "web", Port: Port{"udp", 53, 53}, Expect: "deny", Pos: Pos{6, 5}}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("p.yaml", []byte(tc.src))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", *got, tc.want)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Error{File: "a.yaml", Line: 3, Col: 9, Msg: "bad"}
	if e.Error() != "a.yaml:3:9: bad" || e.String() != e.Error() {
		t.Errorf("Error() = %q", e.Error())
	}
	if got := (&Error{Line: 1, Col: 2, Msg: "x"}).Error(); got != "1:2: x" {
		t.Errorf("without file: %q", got)
	}
	l := ErrorList{e, {File: "a.yaml", Line: 4, Col: 1, Msg: "worse"}}
	if l.Error() != "a.yaml:3:9: bad\na.yaml:4:1: worse" {
		t.Errorf("ErrorList.Error() = %q", l.Error())
	}
	var target *Error
	if !errors.As(error(l), &target) || target != e {
		t.Errorf("errors.As did not find the first *Error")
	}
}

func TestHash(t *testing.T) {
	if got := Hash(nil); got != "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("Hash(nil) = %s", got)
	}
	if Hash([]byte("mode: audit\n")) == Hash([]byte("mode: audit \n")) {
		t.Errorf("Hash ignores content")
	}
}
