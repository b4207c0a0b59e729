package node

import (
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

const workloadPolicy = `mode: enforce
segments:
  app: {role: app}
  api: {svc: api}
  web: {svc: web}
  db: {role: db}
rules:
  - {name: api-to-db, from: [api], to: [db], ports: [tcp/5432]}
`

// wlPeer is a genuine record of a fresh key declaring workloads, with a
// certificate of the rig's CA (node tags role=app) allowing pairs.
func (r *caRig) wlPeer(t *testing.T, name string, ws []gossip.Workload, pairs ...ca.TagPair) gossip.Member {
	t.Helper()
	n := newTestNode(t)
	c, err := ca.Issue(r.caPriv, ca.Certificate{Name: name, PublicKey: n.pub, Tags: map[string]string{"role": "app"},
		WorkloadTags: pairs, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	rec := gossip.Record{Format: 1, Name: name, PublicKey: n.pub.String(), ListenPort: 51820,
		Address4: mesh.Candidate4(r.cfg.Network, n.pub, 0), Address6: mesh.Address6(r.cfg.Network6, n.pub),
		Claimed: time.Now().UnixNano(), Workloads: ws}
	if rec.Cert, err = c.Marshal(); err != nil {
		t.Fatal(err)
	}
	return n.withRecord(rec, gossip.StateAlive)
}

func (r *caRig) applySigned(t *testing.T, policy string, version uint64) {
	t.Helper()
	sig, err := ca.SignPolicy(r.caPriv, []byte(policy), version)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.n.ApplyPolicy([]byte(policy), ApplyOptions{Version: version, Signature: sig}); err != nil {
		t.Fatal(err)
	}
}

// TestCAModePeerWorkloads: a peer's workload counts (status active, its
// segments, in the compiled member) only when the peer's certificate
// allows its tags; otherwise status shows it rejected with the reason and
// its tags count nowhere.
func TestCAModePeerWorkloads(t *testing.T) {
	r := newCARig(t)
	r.applySigned(t, workloadPolicy, 1)
	m := r.wlPeer(t, "app-1", []gossip.Workload{
		{Name: "api", Tags: map[string]string{"svc": "api"}},
		{Name: "web", Tags: map[string]string{"svc": "web"}},
	}, ca.TagPair{Key: "svc", Value: "api"})
	r.gossip.setMembers(m)
	waitFor(t, "the peer up", func() bool { return len(r.n.Status().Peers) == 1 && r.n.Status().Peers[0].State == api.StateUp })

	p := r.peerState(t, m.Name)
	if len(p.Workloads) != 2 {
		t.Fatalf("workloads %+v", p.Workloads)
	}
	if w := p.Workloads[0]; w.Name != "api" || w.State != api.WorkloadActive || w.Reason != "" || len(w.Segments) != 2 ||
		w.Segments[0] != "api" || w.Segments[1] != "app" {
		t.Errorf("allowed workload: %+v", w)
	}
	if w := p.Workloads[1]; w.Name != "web" || w.State != api.WorkloadRejected ||
		w.Reason != "tag svc=web not allowed by the node's certificate" || len(w.Segments) != 0 {
		t.Errorf("disallowed workload: %+v", w)
	}
	r.n.mu.Lock()
	members := r.n.view.admitted()
	r.n.mu.Unlock()
	if len(members) != 1 || len(members[0].Workloads) != 1 || members[0].Workloads[0].Name != "api" {
		t.Fatalf("compiled members: %+v", members)
	}
}

// TestCAModeLocalWorkloadVerdicts: this node's own workloads are judged
// against its own certificate (which here allows no workload tags).
func TestCAModeLocalWorkloadVerdicts(t *testing.T) {
	r := newCARig(t)
	setWorkloads(t, r.dir, "workloads:\n  - {name: api, unit: api.service, tags: {svc: api}}\n  - {name: job, cgroup: /system.slice/job.service}\n")
	if err := r.n.Reload(); err != nil {
		t.Fatal(err)
	}
	r.n.mu.Lock()
	ok, rejected := r.n.localWorkloadVerdicts()
	r.n.mu.Unlock()
	if len(ok) != 1 || ok[0].Name != "job" || len(rejected) != 1 || rejected["api"] != "tag svc=api not allowed by the node's certificate" {
		t.Fatalf("verdicts: ok %+v, rejected %v", ok, rejected)
	}
}

// TestCAModeStubWithoutCertificate: a peer whose certificate did not fit
// its record stub (gossip leaves it out) waits for the full record, then is
// admitted with its workloads.
func TestCAModeStubWithoutCertificate(t *testing.T) {
	r := newCARig(t)
	full := r.wlPeer(t, "app-1", []gossip.Workload{{Name: "api", Tags: map[string]string{"svc": "api"}}}, ca.TagPair{Key: "svc", Value: "api"})
	rec, err := gossip.DecodeRecord(full.Meta)
	if err != nil {
		t.Fatal(err)
	}
	stubRec := rec
	stubRec.Cert, stubRec.Workloads, stubRec.Ext = nil, nil, "0123456789abcdef0123456789abcdef"
	stub := full
	if stub.Meta, err = stubRec.Encode(); err != nil {
		t.Fatal(err)
	}
	r.gossip.setMembers(stub)
	waitFor(t, "the stub seen", func() bool { return len(r.n.Status().Peers) == 1 })
	if p := r.peerState(t, full.Name); p.State == api.StateUp || !strings.HasPrefix(p.Reason, ReasonPending+":") {
		t.Fatalf("a stub without certificate: %+v", p)
	}
	r.gossip.setMembers(full)
	waitFor(t, "the full record admitted", func() bool { return r.peerState(t, full.Name).State == api.StateUp })
	if w := r.peerState(t, full.Name).Workloads; len(w) != 1 || w[0].State != api.WorkloadActive {
		t.Fatalf("workloads %+v", w)
	}
}
