package acl

import (
	"reflect"
	"testing"
)

// TestCompileEgress is the example at the sender: app-1 with
// workloads api and cron, a policy api → db tcp/5432 and app → db
// tcp/6379. Processes of api may reach both ports of db-1; those of cron
// and in no workload only 6379; nobody reaches web-1 (no rule) — web-1 is
// no destination at all. Destination identities are shared by peers of one
// segment set and stay across recompiles.
func TestCompileEgress(t *testing.T) {
	p := polMustParse(t, `segments:
  app: {role: app}
  api: {role: app, svc: api}
  db: {role: db}
  web: {role: web}
rules:
  - {name: api-db, from: [api], to: [db], ports: [tcp/5432]}
  - {name: app-db, from: [app], to: [db], ports: [tcp/6379, icmp]}
`)
	self := polMember("app-1", "100.80.0.1", "", map[string]string{"role": "app"})
	self.Workloads = []Workload{{Name: "api", Tags: map[string]string{"svc": "api"}}, {Name: "cron", Tags: map[string]string{"svc": "cron"}}}
	db1 := polMember("db-1", "100.80.0.2", "fd5e::2", map[string]string{"role": "db"})
	db2 := polMember("db-2", "100.80.0.3", "", map[string]string{"role": "db"})
	web1 := polMember("web-1", "100.80.0.4", "", map[string]string{"role": "web"})
	a := NewIdentityAllocator()
	e := a.CompileEgress(p, self, []Member{db1, db2, web1, self})
	if len(e.Destinations) != 3 {
		t.Fatalf("destinations %+v, want db-1 (both families) and db-2", e.Destinations)
	}
	db := e.Destinations[0].ID
	for _, d := range e.Destinations {
		if d.ID != db {
			t.Fatalf("db-1 and db-2 have destination identities %+v", e.Destinations)
		}
	}
	if !reflect.DeepEqual(e.DestSegments, map[uint32][]string{db: {"db"}}) {
		t.Fatalf("destination segments %v", e.DestSegments)
	}
	want := []LocalIdentity{
		{Workload: "", Segments: []string{"app"}, Grants: []Grant{{Dest: db, ICMP: true, TCP: []PortRange{{6379, 6379}}}}},
		{Workload: "api", Segments: []string{"api", "app"}, Grants: []Grant{{Dest: db, ICMP: true, TCP: []PortRange{{5432, 5432}, {6379, 6379}}}}},
		{Workload: "cron", Segments: []string{"app"}, Grants: []Grant{{Dest: db, ICMP: true, TCP: []PortRange{{6379, 6379}}}}},
	}
	if !reflect.DeepEqual(e.Locals, want) {
		t.Fatalf("locals\n got %+v\nwant %+v", e.Locals, want)
	}
	// Stable: another db peer joins, the number stays.
	db3 := polMember("db-3", "100.80.0.5", "", map[string]string{"role": "db"})
	if e2 := a.CompileEgress(p, self, []Member{db1, db2, web1, db3}); len(e2.Destinations) != 4 || e2.Destinations[3].ID != db {
		t.Fatalf("after a join: %+v (db identity was %d)", e2.Destinations, db)
	}
	// No policy: no grants, no destinations.
	if e3 := a.CompileEgress(nil, self, []Member{db1}); len(e3.Destinations) != 0 || len(e3.Locals) != 3 || e3.Locals[1].Grants != nil {
		t.Fatalf("nil policy: %+v", e3)
	}
}
