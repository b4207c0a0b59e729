package node

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

const explainWorkloadPolicy = `segments:
  api: {svc: api}
  db: {role: db}
  cron: {job: cron}
  app: {role: app}
rules:
  - {name: api-to-db, from: [api], to: [db], ports: [tcp/5432]}
  - {name: app-to-cron, from: [app], to: [cron], ports: [tcp/9000]}
`

// openWorkloadPeer announces app-1 {role: app} with workloads api
// {svc: api} and web {svc: web} to an open-mode rig and waits until it is
// admitted.
func openWorkloadPeer(t *testing.T, r *rig) (mesh.Key, gossip.Record) {
	t.Helper()
	n := newTestNode(t)
	rec := gossip.Record{Format: 1, Name: "app-1", PublicKey: n.pub.String(), ListenPort: 51820,
		Address4: mesh.Candidate4(r.cfg.Network, n.pub, 0), Address6: mesh.Address6(r.cfg.Network6, n.pub),
		Claimed: time.Now().UnixNano(), Tags: map[string]string{"role": "app"}, Workloads: []gossip.Workload{
			{Name: "api", Tags: map[string]string{"svc": "api"}},
			{Name: "web", Tags: map[string]string{"svc": "web"}},
		}}
	r.gossip.setMembers(n.withRecord(rec, gossip.StateAlive))
	waitFor(t, "app-1 up", func() bool {
		st := r.n.Status()
		return len(st.Peers) == 1 && st.Peers[0].State == api.StateUp
	})
	return n.pub, rec
}

func explainJSON(t *testing.T, e *api.Explanation) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExplainWorkloads: NODE/WORKLOAD as source or destination explains
// the workload's identity (node tags and its own), for a peer's workload
// and this node's, by name, key or address; the node alone keeps the
// node's identity; an unknown workload or node is a clear error.
func TestExplainWorkloads(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, dir, "")
	setWorkloads(t, dir, "workloads:\n  - {name: cron, unit: cron.service, tags: {job: cron}}\n")
	if err := r.n.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.n.ApplyPolicy([]byte(explainWorkloadPolicy), ApplyOptions{AppliedBy: "t"}); err != nil {
		t.Fatal(err)
	}
	key, rec := openWorkloadPeer(t, r)

	for _, from := range []string{"app-1/api", key.String() + "/api", rec.Address4.String() + "/api", rec.Address6.String() + "/api"} {
		e, err := r.n.Explain(from, "self", "tcp/5432")
		if err != nil {
			t.Fatalf("%s: %v", from, err)
		}
		if e.Verdict != "allow" || e.From != "app-1" || e.FromWorkload != "api" || e.ToWorkload != "" ||
			!slices.Equal(e.FromSegments, []string{"api", "app"}) || !slices.Equal(e.Rules, []string{"api-to-db"}) || len(e.Notes) != 0 {
			t.Fatalf("%s: %+v", from, e)
		}
	}
	e, _ := r.n.Explain("app-1/api", "self", "tcp/5432")
	js := explainJSON(t, e)
	if !strings.Contains(js, `"from":"app-1","to":"self"`) || !strings.Contains(js, `"from_workload":"api"`) ||
		strings.Contains(js, "to_workload") || strings.Contains(js, "notes") {
		t.Errorf("JSON: %s", js)
	}
	var text bytes.Buffer
	api.FormatExplanation(&text, e)
	if !strings.HasPrefix(text.String(), "ALLOW: app-1/api -> self tcp/5432 (policy v1, enforce mode)\n  app-1/api segments: api, app\n") {
		t.Errorf("text:\n%s", text.String())
	}

	// The node itself and its other workload have no svc=api.
	for _, from := range []string{"app-1", "app-1/web"} {
		if e, err := r.n.Explain(from, "self", "tcp/5432"); err != nil || e.Verdict != "deny" || slices.Contains(e.FromSegments, "api") {
			t.Errorf("%s: %v %+v", from, err, e)
		}
	}
	if e, _ := r.n.Explain("app-1", "self", "tcp/5432"); strings.Contains(explainJSON(t, e), "workload") {
		t.Errorf("a node explains without workload fields: %s", explainJSON(t, e))
	}

	// This node's workload as destination.
	e, err := r.n.Explain("app-1", "self/cron", "tcp/9000")
	if err != nil || e.Verdict != "allow" || e.ToWorkload != "cron" || !slices.Equal(e.ToSegments, []string{"cron", "db"}) {
		t.Fatalf("to self/cron: %v %+v", err, e)
	}
	if e, _ := r.n.Explain("app-1", "self", "tcp/9000"); e.Verdict != "deny" {
		t.Errorf("to self: %+v", e)
	}

	for _, c := range []struct{ from, to, want string }{
		{"app-1/nope", "self", `from: node app-1 has no workload "nope" (its workloads: api, web)`},
		{"app-1", "self/api", `to: node self has no workload "api" (its workloads: cron)`},
		{"app-9/api", "self", `from: "app-9/api": no admitted node named "app-9"`},
		{"app-9", "self", `from: no admitted node named "app-9"`},
		{"self/cron/x", "self", `from: "self/cron/x": no admitted node named "self/cron"`},
	} {
		if _, err := r.n.Explain(c.from, c.to, "tcp/1"); err == nil || err.Error() != c.want {
			t.Errorf("%s -> %s: %v, want %q", c.from, c.to, err, c.want)
		}
	}
}

// TestExplainRejectedWorkload: in CA mode a workload its certificate does
// not allow explains with the node's identity and a note saying why, for a
// peer's workload and this node's.
func TestExplainRejectedWorkload(t *testing.T) {
	r := newCARig(t)
	setWorkloads(t, r.dir, "workloads:\n  - {name: cron, unit: cron.service, tags: {job: cron}}\n")
	if err := r.n.Reload(); err != nil {
		t.Fatal(err)
	}
	r.applySigned(t, explainWorkloadPolicy, 1)
	r.gossip.setMembers(r.wlPeer(t, "app-1", []gossip.Workload{
		{Name: "api", Tags: map[string]string{"svc": "api"}},
		{Name: "web", Tags: map[string]string{"svc": "api", "zone": "a"}},
	}, ca.TagPair{Key: "svc", Value: "api"}))
	waitFor(t, "app-1 up", func() bool {
		st := r.n.Status()
		return len(st.Peers) == 1 && st.Peers[0].State == api.StateUp
	})

	if e, err := r.n.Explain("app-1/api", "db-1", "tcp/5432"); err != nil || e.Verdict != "allow" || len(e.Notes) != 0 {
		t.Fatalf("allowed workload: %v %+v", err, e)
	}
	e, err := r.n.Explain("app-1/web", "db-1", "tcp/5432")
	if err != nil {
		t.Fatal(err)
	}
	note := "workload web of app-1 is rejected (tag zone=a not allowed by the node's certificate): explained with the node's identity"
	if e.Verdict != "deny" || e.FromWorkload != "web" || !slices.Equal(e.FromSegments, []string{"app"}) || !slices.Equal(e.Notes, []string{note}) {
		t.Fatalf("rejected workload: %+v", e)
	}
	var text bytes.Buffer
	api.FormatExplanation(&text, e)
	if !strings.Contains(text.String(), "\n  note: "+note+"\n") || !strings.Contains(text.String(), "\n  app-1/web segments: app\n") {
		t.Errorf("text:\n%s", text.String())
	}
	if !strings.Contains(explainJSON(t, e), `"notes":["`+note+`"]`) {
		t.Errorf("JSON: %s", explainJSON(t, e))
	}

	// This node's own workload: its certificate allows no workload tags.
	e, err = r.n.Explain("app-1", "db-1/cron", "tcp/9000")
	if err != nil || e.Verdict != "deny" || e.ToWorkload != "cron" || len(e.Notes) != 1 ||
		!strings.HasPrefix(e.Notes[0], "workload cron of db-1 is rejected (tag job=cron not allowed by the node's certificate)") {
		t.Fatalf("own rejected workload: %v %+v", err, e)
	}
	if _, err := r.n.Explain("app-1/x", "db-1", "tcp/1"); err == nil || !strings.HasSuffix(err.Error(), "(its workloads: api, web (rejected))") {
		t.Errorf("unknown workload: %v", err)
	}
}
