package acl

import (
	"reflect"
	"testing"
)

func TestRunTests(t *testing.T) {
	p := polMustParse(t, yamlLines(
		"segments:",
		"  web: {role: web}",
		"  app: {role: app}",
		"  db: {role: db}",
		"rules:",
		"  - {name: web-app, from: [web], to: [app], ports: [tcp/8080-8090, udp/53]}",
		"  - {name: all-db, from: ['*'], to: [db], ports: [tcp/5432]}",
		"  - {name: web-anything, from: [web], to: ['*'], ports: [icmp]}",
		"tests:",
		"  - {from: web, to: app, port: tcp/8085, expect: allow}",
		"  - {from: web, to: app, port: tcp/8091, expect: allow}",
		"  - {from: app, to: db, port: tcp/5432, expect: deny}",
		"  - {from: '*', to: db, port: tcp/5432, expect: allow}",
		"  - {from: '*', to: app, port: tcp/8080, expect: deny}",
		"  - {from: web, to: '*', port: icmp, expect: allow}",
		"  - {from: app, to: web, port: icmp, expect: allow}",
		"  - {from: web, to: app, port: udp/53, expect: allow}",
		"  - {from: web, to: app, port: tcp/53, expect: allow}",
	))
	got := p.RunTests()
	want := []TestFailure{
		{Test: p.Tests[1], Got: "deny"},
		{Test: p.Tests[2], Got: "allow", Rules: []string{"all-db"}},
		{Test: p.Tests[6], Got: "deny"},
		{Test: p.Tests[8], Got: "deny"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("RunTests =\n%+v\nwant\n%+v", got, want)
	}
	if s := got[0].Format("p.yaml"); s != `p.yaml:11:5: test web -> app tcp/8091: expected allow, got deny (no rule allows it)` {
		t.Errorf("Format = %q", s)
	}
	if s := got[1].Error(); s != `12:5: test app -> db tcp/5432: expected deny, got allow (allowed by rule "all-db")` {
		t.Errorf("Error = %q", s)
	}
	if e := got[2].Err("x.yaml"); e.File != "x.yaml" || e.Line != 16 || e.Col != 5 {
		t.Errorf("Err = %+v", e)
	}

	var none *Policy
	if f := none.RunTests(); f != nil {
		t.Errorf("nil policy RunTests = %v", f)
	}
}
