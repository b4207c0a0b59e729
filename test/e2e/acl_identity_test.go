package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

const identityPolicy = `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
rules:
  - {name: web-to-db, from: [web], to: [db], ports: [tcp/5432, tcp/8000-8100]}
  - {name: app-to-db, from: [app], to: [db], ports: [tcp/5432, icmp]}
`

// srcChains reads the IPv4 source sets of table inet segmesh in ns
// (id_N_s4): source -> identity chain id_N.
func srcChains(ns string) (map[string]string, error) {
	objs, err := nftObjects(ns, "list", "table", "inet", "segmesh")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, o := range objs {
		raw, ok := o["set"]
		if !ok {
			continue
		}
		var set struct {
			Name string            `json:"name"`
			Elem []json.RawMessage `json:"elem"`
		}
		if err := json.Unmarshal(raw, &set); err != nil {
			return nil, err
		}
		chain, ok := strings.CutSuffix(set.Name, "_s4")
		if !ok || !strings.HasPrefix(chain, "id_") {
			continue
		}
		for _, e := range set.Elem {
			var addr string
			if err := json.Unmarshal(e, &addr); err != nil {
				return nil, fmt.Errorf("unexpected %s element %s", set.Name, e)
			}
			if other, dup := out[addr]; dup && other != chain { // the same twice: a dump during a resize
				return nil, fmt.Errorf("%s is in the sources of %s and %s", addr, other, chain)
			}
			out[addr] = chain
		}
	}
	return out, nil
}

// TestACLSharedIdentity: peers with the same segments share one identity
// on the node they may reach (one chain, one source set element each); a peer
// joining into it adds one element and no chain, and the numbers of the
// existing identities stay.
func TestACLSharedIdentity(t *testing.T) {
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: identityPolicy})
	specs := []struct {
		name string
		tags map[string]string
	}{
		{"db1", map[string]string{"role": "db"}},
		{"web1", map[string]string{"role": "web"}}, {"web2", map[string]string{"role": "web"}},
		{"web3", map[string]string{"role": "web"}}, {"web4", map[string]string{"role": "web"}},
		{"app1", map[string]string{"role": "app"}},
	}
	var nodes []*harness.Node
	for i, s := range specs {
		spec := harness.NodeSpec{Name: s.name, Tags: s.tags}
		if i > 0 {
			spec.Join = []string{nodes[0].GossipAddr()}
		}
		nodes = append(nodes, tc.AddNode(spec))
	}
	tc.Start(nodes...)
	tc.WaitMesh(meshTimeout, nodes...)
	db := nodes[0]
	addr := map[string]string{}
	for _, n := range nodes {
		addr[n.Name] = tc.Status(n).Self.Address
	}
	var before map[string]string
	tc.WaitFor("db1 maps the 5 peers to 2 identities", 20*time.Second, func() error {
		m, err := srcChains(db.Namespace)
		if err != nil {
			return err
		}
		if len(m) != 5 {
			return fmt.Errorf("the source sets hold %d IPv4 elements: %v", len(m), m)
		}
		web := m[addr["web1"]]
		for _, w := range []string{"web2", "web3", "web4"} {
			if m[addr[w]] != web {
				return fmt.Errorf("%s is in %q, web1 in %q: %v", w, m[addr[w]], web, m)
			}
		}
		if app := m[addr["app1"]]; app == web || !strings.HasPrefix(app, "id_") {
			return fmt.Errorf("app1 is in %q, web in %q", app, web)
		}
		before = m
		return nil
	})
	chains := func() []string {
		out, err := db.Exec("nft", "list", "table", "inet", "segmesh")
		if err != nil {
			t.Fatalf("nft list table: %v: %s", err, out)
		}
		var ids []string
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "chain" && strings.HasPrefix(f[1], "id_") {
				ids = append(ids, f[1])
			}
		}
		sort.Strings(ids)
		return ids
	}
	if ids := chains(); len(ids) != 2 {
		t.Fatalf("db1 has identity chains %v, want 2", ids)
	}
	tbl, _ := db.Exec("nft", "list", "table", "inet", "segmesh")
	for _, want := range []string{"tcp . 5432", "tcp . 8000-8100", "icmp type echo-request goto allow_in"} {
		if !strings.Contains(string(tbl), want) {
			t.Errorf("db1's table lacks %q:\n%s", want, tbl)
		}
	}

	// One more web peer: one element, same chains, same numbers.
	web5 := tc.AddNode(harness.NodeSpec{Name: "web5", Tags: map[string]string{"role": "web"}, Join: []string{db.GossipAddr()}})
	tc.Start(web5)
	tc.WaitMesh(meshTimeout, append(nodes, web5)...)
	a5 := tc.Status(web5).Self.Address
	tc.WaitFor("web5 joins the web identity on db1", 20*time.Second, func() error {
		m, err := srcChains(db.Namespace)
		if err != nil {
			return err
		}
		if len(m) != 6 || m[a5] != before[addr["web1"]] {
			return fmt.Errorf("sources %v, want web5 (%s) in %s", m, a5, before[addr["web1"]])
		}
		for a, c := range before {
			if m[a] != c {
				return fmt.Errorf("%s moved from %s to %s", a, c, m[a])
			}
		}
		return nil
	})
	if ids := chains(); len(ids) != 2 {
		t.Fatalf("after the join db1 has identity chains %v, want 2", ids)
	}
}
