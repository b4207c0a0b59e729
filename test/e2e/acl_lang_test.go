package e2e

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// langPolicy uses the second edition of the policy language: a named
// service (web), built-in services (postgres, redis), a list selector
// (webs), a "!key": "*" selector (stable-web) and a negated value
// (not-prod, which also matches nodes without env).
const langPolicy = `mode: enforce
services:
  web: [tcp/8080, tcp/8443]
segments:
  lb:         {role: lb}
  stable-web: {role: web, "!canary": "*"}
  webs:       {role: web, env: [prod, staging]}
  db:         {role: db}
  not-prod:   {"!env": prod}
rules:
  - {name: lb-web, from: [lb], to: [stable-web], ports: [web]}
  - {name: web-db, from: [webs], to: [db], ports: [postgres]}
  - {name: to-lb, from: [not-prod], to: [lb], ports: [redis]}
  - {name: ping, from: ["*"], to: ["*"], ports: [icmp]}
tests:
  - {from: webs, to: db, port: postgres, expect: allow}
  - {from: lb, to: stable-web, port: tcp/8443, expect: allow}
  - {from: lb, to: db, port: postgres, expect: deny}
`

// badLangPolicy has an unknown service (line 5, column 47) and a selector
// no node can meet (line 3, column 20).
const badLangPolicy = `mode: enforce
segments:
  web: {role: web, "!role": "*"}
rules:
  - {name: r, from: [web], to: [web], ports: [postgress]}
`

// langExplanation is the part of `policy explain --json` this test reads.
type langExplanation struct {
	Verdict    string   `json:"verdict"`
	Port       string   `json:"port"`
	Service    string   `json:"service"`
	Rules      []string `json:"rules"`
	Considered []struct {
		Rule      string `json:"rule"`
		Allow     bool   `json:"allow"`
		PortMatch string `json:"port_match"`
		Service   string `json:"service"`
		To        []struct {
			Segment string `json:"segment"`
			Match   bool   `json:"match"`
			Terms   []struct {
				Term  string `json:"term"`
				Match bool   `json:"match"`
				Value string `json:"value"`
			} `json:"terms"`
		} `json:"to"`
	} `json:"considered"`
}

// TestACLLanguage: services and set-based selectors are enforced as
// written: probes on the allowed ports pass and the others time out;
// explain names the service and the failing term; a bad file is refused by
// `policy check` and `policy apply` with line:col, and the mesh keeps its
// policy.
func TestACLLanguage(t *testing.T) {
	start := time.Now()
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: langPolicy})
	lb := tc.AddNode(harness.NodeSpec{Name: "lb", Tags: role("lb")})
	join := []string{lb.GossipAddr()}
	web1 := tc.AddNode(harness.NodeSpec{Name: "web1", Tags: map[string]string{"role": "web", "env": "prod"}, Join: join})
	web2 := tc.AddNode(harness.NodeSpec{Name: "web2", Tags: map[string]string{"role": "web", "env": "staging", "canary": "yes"}, Join: join})
	db := tc.AddNode(harness.NodeSpec{Name: "db", Tags: map[string]string{"role": "db", "env": "prod"}, Join: join})
	all := []*harness.Node{lb, web1, web2, db}
	tc.Start(all...)
	tc.WaitMesh(meshTimeout, all...)
	self := selves(t, tc, all...)
	var pol harness.StatusPolicy
	tc.WaitFor("one policy everywhere", 10*time.Second, func() error {
		p, err := policyOf(lb)
		if err != nil {
			return err
		}
		pol = p
		return holdsFor(all, 0, hasPolicy(p.Version, p.Hash))
	})
	wantSegs := map[*harness.Node][]string{lb: {"lb", "not-prod"}, web1: {"stable-web", "webs"}, web2: {"not-prod", "webs"}, db: {"db"}}
	for _, n := range all {
		if got := tc.Status(n).Self.Segments; !sameStrings(got, wantSegs[n]) {
			t.Errorf("%s: segments %v, want %v", n.Name, got, wantSegs[n])
		}
	}
	addr := func(n *harness.Node) netip.Addr { return netip.MustParseAddr(self[n].Self.Address) }
	for _, n := range all { // handshakes first, so a probe's first packet is not lost to one
		for _, o := range all {
			if o != n {
				tc.Ping(n, self[o].Self.Address, pingTimeout)
			}
		}
	}

	startServer(t, tc, web1.Namespace, "serve-web1", []int{8080, 8443, 5432}, nil)
	startServer(t, tc, web2.Namespace, "serve-web2", []int{8080, 8443}, nil)
	startServer(t, tc, db.Namespace, "serve-db", []int{5432, 8080, 6379}, nil)
	startServer(t, tc, lb.Namespace, "serve-lb", []int{6379, 8080}, nil)

	type probe struct {
		to    *harness.Node
		port  int
		allow bool
	}
	cases := map[*harness.Node][]probe{
		lb: {
			{web1, 8080, true}, {web1, 8443, true}, // named service web into stable-web
			{web1, 5432, false},
			{web2, 8080, false}, {web2, 8443, false}, // canary: not in stable-web
			{db, 5432, false}, {db, 8080, false},
		},
		web1: {
			{db, 5432, true},                     // built-in postgres, webs (env prod)
			{db, 8080, false}, {db, 6379, false}, // not in the rule
			{lb, 6379, false}, // env=prod: not in not-prod
		},
		web2: {
			{db, 5432, true}, // webs (env staging)
			{lb, 6379, true}, // built-in redis from not-prod
			{lb, 8080, false},
		},
		db: {
			{lb, 6379, false}, // env=prod
			{web1, 5432, false}, {web1, 8080, false},
		},
	}
	allowed, denied := 0, 0
	for src, ps := range cases {
		var flows []flow
		want := map[flow]bool{}
		for _, p := range ps {
			fl := flow{"tcp", addr(p.to), p.port}
			flows, want[fl] = append(flows, fl), p.allow
		}
		a, d := checkFlows(t, src, flows, want)
		allowed, denied = allowed+a, denied+d
	}
	t.Logf("%d allowed and %d denied flows as the policy says", allowed, denied)

	t.Run("explain", func(t *testing.T) {
		r := segmeshCLI(t, "policy", "explain", "web1", "db", "postgres", "--json", "--socket", lb.Socket)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		var e langExplanation
		if err := json.Unmarshal([]byte(r.stdout), &e); err != nil {
			t.Fatalf("%v: %s", err, r.stdout)
		}
		if e.Verdict != "allow" || e.Port != "tcp/5432" || e.Service != "postgres" || !sameStrings(e.Rules, []string{"web-db"}) {
			t.Errorf("explain web1 db postgres: %+v", e)
		}
		if len(e.Considered) != 4 || e.Considered[1].Rule != "web-db" || e.Considered[1].PortMatch != "postgres" || e.Considered[1].Service != "postgres" || !e.Considered[1].Allow {
			t.Errorf("considered: %+v", e.Considered)
		}

		r = segmeshCLI(t, "policy", "explain", "lb", "web2", "tcp/8080", "--socket", lb.Socket)
		if r.code != 3 { // a deny
			t.Fatalf("%v", r)
		}
		for _, w := range []string{
			"DENY: lb -> web2 tcp/8080",
			"    lb-web: does not apply\n      from lb ✓: role: lb ✓\n      to stable-web ✗: \"!canary\": \"*\" ✗ (canary=yes), role: web ✓\n      port tcp/8080 ✓ (service web)\n",
		} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("explain text lacks %q:\n%s", w, r.stdout)
			}
		}
	})

	t.Run("bad file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(file, []byte(badLangPolicy), 0o644); err != nil {
			t.Fatal(err)
		}
		want := []string{
			file + `:3:20: segment "web" can never match: {role: web, "!role": "*"} requires tag "role" and its absence`,
			file + `:5:47: unknown service "postgress"`,
		}
		r := segmeshCLI(t, "policy", "check", file)
		if r.code != 1 {
			t.Fatalf("policy check: exit %d, want 1: %v", r.code, r)
		}
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("policy check stderr lacks %q:\n%s", w, r.stderr)
			}
		}
		r = segmeshCLI(t, "policy", "apply", file, "--socket", lb.Socket)
		if r.code != 1 {
			t.Fatalf("policy apply: exit %d, want 1: %v", r.code, r)
		}
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("policy apply stderr lacks %q:\n%s", w, r.stderr)
			}
		}
		if err := holdsFor(all, time.Second, hasPolicy(pol.Version, pol.Hash)); err != nil {
			t.Errorf("after a refused apply: %v", err)
		}
	})
	t.Logf("TIMING TestACLLanguage %v", time.Since(start).Round(time.Millisecond))
}
