package acl

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

const idSegs = "segments:\n  web: {role: web}\n  app: {role: app}\n  db: {role: db}\n  prod: {env: prod}\n"
const idRules = "rules:\n  - {name: a, from: [web], to: [app], ports: [tcp/80, tcp/8000-8100]}\n" +
	"  - {name: b, from: [prod], to: [app], ports: [udp/53, icmp]}\n  - {name: c, from: [db], to: ['*'], ports: [any]}\n"

func idPeers(n int) []Member {
	var out []Member
	roles := []string{"web", "db", "cache"}
	for i := range n {
		tags := map[string]string{"role": roles[i%3]}
		if i%2 == 0 {
			tags["env"] = "prod"
		}
		out = append(out, polMember(fmt.Sprint("p", i), fmt.Sprintf("100.80.%d.%d", i/200, 1+i%200), fmt.Sprintf("fd5e::%x", 0x100+i), tags))
	}
	return out
}

func TestIdentityCompileMatchesCompile(t *testing.T) {
	p := polMustParse(t, idSegs+idRules)
	self := polMember("me", "100.80.250.1", "fd5e::1", map[string]string{"role": "app"})
	peers := idPeers(30)
	// A peer claiming another's address gets the union.
	dup := polMember("dup", "100.80.0.2", "", map[string]string{"role": "web"})
	peers = append(peers, dup)
	e := NewIdentityAllocator().Compile(p, self, peers)
	if got, want := e.PerSource(), Compile(p, self, peers); !reflect.DeepEqual(got, want) {
		t.Fatalf("flattened identities differ from Compile:\n got %+v\nwant %+v", got, want)
	}
	// Sources of one segment set share one identity.
	byID := map[uint32]int{}
	for _, s := range e.Sources {
		byID[s.ID]++
	}
	if len(e.Identities) > 6 || len(byID) != len(e.Identities) {
		t.Fatalf("%d identities, %d referenced: %+v", len(e.Identities), len(byID), e.Identities)
	}
	for _, id := range e.Identities {
		if byID[id.ID] == 0 {
			t.Errorf("identity %d unreferenced", id.ID)
		}
	}
}

func TestIdentityStableAcrossRecompiles(t *testing.T) {
	p := polMustParse(t, idSegs+idRules)
	self := polMember("me", "100.80.250.1", "fd5e::1", map[string]string{"role": "app"})
	a := NewIdentityAllocator()
	peers := idPeers(12)
	first := a.Compile(p, self, peers)
	num := func(e Enforced) map[string]uint32 {
		m := map[string]uint32{}
		for _, id := range e.Identities {
			m[fmt.Sprint(id.Segments)] = id.ID
		}
		return m
	}
	// A peer joining into an existing set, and one leaving: same numbers.
	joined := append(slices.Clone(peers), polMember("new", "100.80.9.9", "", map[string]string{"role": "web", "env": "prod"}))
	if got, want := num(a.Compile(p, self, joined[1:])), num(first); !reflect.DeepEqual(got, want) {
		t.Fatalf("numbers changed: %v, want %v", got, want)
	}
	// A new set gets a new number; the others keep theirs.
	withNew := append(slices.Clone(peers), polMember("ops", "100.80.9.10", "", map[string]string{"role": "db", "env": "dev", "x": "y"}))
	withNew[len(withNew)-1].Tags = map[string]string{"role": "web", "env": "prod"} // existing set
	withNew = append(withNew, polMember("db-only", "100.80.9.11", "", map[string]string{"role": "db"}))
	before := num(first)
	after := num(a.Compile(p, self, withNew))
	for k, v := range before {
		if after[k] != v {
			t.Errorf("set %s: number %d, was %d", k, after[k], v)
		}
	}
	// Only the sets no peer has are freed: a set gone and back gets a number
	// that no live set holds.
	only := a.Compile(p, self, peers[:1])
	if len(only.Identities) != 1 || only.Identities[0].ID != before[fmt.Sprint(only.Identities[0].Segments)] {
		t.Fatalf("after shrinking: %+v, numbers before %v", only.Identities, before)
	}
	again := a.Compile(p, self, peers)
	seen := map[uint32]bool{}
	for _, id := range again.Identities {
		if seen[id.ID] {
			t.Fatalf("number %d given twice: %+v", id.ID, again.Identities)
		}
		seen[id.ID] = true
	}
}

func TestIdentityNilPolicyAndLocal(t *testing.T) {
	self := polMember("me", "100.80.250.1", "fd5e::1", nil)
	e := NewIdentityAllocator().Compile(nil, self, idPeers(3))
	if len(e.Sources)+len(e.Identities) != 0 || !reflect.DeepEqual(e.Local, []netip.Addr{self.Addr4, self.Addr6}) {
		t.Fatalf("nil policy: %+v", e)
	}
}

// TestIdentityWorkloads: a peer's identity at the receiver is the union of
// the source segments of its node and of each of its workloads (node tags
// and the workload's); peers with the same union share it. A workload tag
// never redefines a node tag.
func TestIdentityWorkloads(t *testing.T) {
	p := polMustParse(t, `segments:
  app: {role: app}
  api: {role: app, svc: api}
  cron: {svc: cron}
  db: {role: db}
rules:
  - {name: api-db, from: [api], to: [db], ports: [tcp/5432]}
  - {name: app-db, from: [app], to: [db], ports: [tcp/6379]}
  - {name: cron-db, from: [cron], to: [db], ports: [icmp]}
`)
	self := polMember("db1", "100.80.250.1", "", map[string]string{"role": "db"})
	app1 := polMember("app1", "100.80.0.1", "", map[string]string{"role": "app"})
	app1.Workloads = []Workload{{Name: "api", Tags: map[string]string{"svc": "api"}}, {Name: "cron", Tags: map[string]string{"svc": "cron"}}}
	app2 := polMember("app2", "100.80.0.2", "", map[string]string{"role": "app"})
	app2.Workloads = []Workload{{Name: "cron", Tags: map[string]string{"svc": "cron"}}, {Name: "api", Tags: map[string]string{"svc": "api"}}}
	app3 := polMember("app3", "100.80.0.3", "", map[string]string{"role": "app"})
	// A workload tag redefining the node's role does not count.
	app4 := polMember("app4", "100.80.0.4", "", map[string]string{"role": "app"})
	app4.Workloads = []Workload{{Name: "x", Tags: map[string]string{"role": "db", "svc": "api"}}}
	if got := p.SegmentsOfMember(app1); !slices.Equal(got, []string{"api", "app", "cron"}) {
		t.Fatalf("app1's segments %v", got)
	}
	if got := p.SegmentsOfMember(app4); !slices.Equal(got, []string{"api", "app"}) {
		t.Fatalf("app4's segments %v (a workload tag redefined the node's role?)", got)
	}
	e := NewIdentityAllocator().Compile(p, self, []Member{app1, app2, app3, app4})
	idOf := map[string]uint32{}
	for _, s := range e.Sources {
		idOf[s.Addr.String()] = s.ID
	}
	if idOf["100.80.0.1"] == 0 || idOf["100.80.0.1"] != idOf["100.80.0.2"] {
		t.Fatalf("app1 and app2 (same workloads, other order) have identities %d and %d", idOf["100.80.0.1"], idOf["100.80.0.2"])
	}
	if idOf["100.80.0.3"] == idOf["100.80.0.1"] || idOf["100.80.0.4"] == idOf["100.80.0.1"] {
		t.Fatalf("identities %v: app3 (no workloads) and app4 (api only) must differ from app1", idOf)
	}
	for _, id := range e.Identities {
		if id.ID != idOf["100.80.0.1"] {
			continue
		}
		if !slices.Equal(id.Segments, []string{"api", "app", "cron"}) || !id.ICMP ||
			!slices.Equal(id.TCP, []PortRange{{Lo: 5432, Hi: 5432}, {Lo: 6379, Hi: 6379}}) {
			t.Fatalf("app1's identity %+v", id)
		}
	}
	// Compile (per source) agrees.
	if got, want := e.PerSource(), Compile(p, self, []Member{app1, app2, app3, app4}); !reflect.DeepEqual(got, want) {
		t.Fatalf("flattened identities differ from Compile:\n got %+v\nwant %+v", got, want)
	}
}
