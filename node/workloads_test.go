package node

import (
	"fmt"
	"testing"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/gossip"
)

func TestCheckWorkloads(t *testing.T) {
	rec := gossip.Record{Tags: map[string]string{"role": "app"}}
	for i := range 33 {
		rec.Workloads = append(rec.Workloads, gossip.Workload{Name: fmt.Sprintf("w%d", i), Tags: map[string]string{"svc": "x"}})
	}
	rec.Workloads[1] = gossip.Workload{Name: "Bad_Name"}
	rec.Workloads[2] = gossip.Workload{Name: "w0"}
	rec.Workloads[3] = gossip.Workload{Name: "redef", Tags: map[string]string{"role": "db"}}
	rec.Workloads[4] = gossip.Workload{Name: "badtag", Tags: map[string]string{"svc": "a b"}}
	ok, rejected := checkWorkloads(rec, nil)
	want := map[int]string{
		1:  `name "Bad_Name" is not 1-32 of [a-z0-9-]`,
		2:  "name declared twice", // the first w0 counts
		3:  "tag role redefines a node tag",
		4:  `bad tag "svc": "a b"`,
		32: "more than 32 workloads",
	}
	if fmt.Sprint(rejected) != fmt.Sprint(want) {
		t.Errorf("rejected %v\nwant     %v", rejected, want)
	}
	if len(ok) != 33-5 || ok[0].Name != "w0" {
		t.Errorf("%d workloads count, first %q", len(ok), ok[0].Name)
	}
}

// wlCert is a certificate for a fresh key with node tags role=app that
// allows the workload tag pairs.
func wlCert(t *testing.T, pairs ...ca.TagPair) *ca.Signed {
	t.Helper()
	_, priv, err := ca.GenerateCA()
	if err != nil {
		t.Fatal(err)
	}
	key := newTestNode(t).pub
	c, err := ca.Issue(priv, ca.Certificate{Name: "app-1", PublicKey: key, Tags: map[string]string{"role": "app"}, WorkloadTags: pairs})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCheckWorkloadsCAMode: a workload counts only when the certificate
// allows every one of its own tags; the reason names the first disallowed
// pair by key. A certificate without workload tags allows only workloads
// without tags.
func TestCheckWorkloadsCAMode(t *testing.T) {
	cert := wlCert(t, ca.TagPair{Key: "svc", Value: "api"}, ca.TagPair{Key: "svc", Value: "worker"}, ca.TagPair{Key: "tier", Value: "batch"})
	rec := gossip.Record{Tags: cert.Tags, Workloads: []gossip.Workload{
		{Name: "api", Tags: map[string]string{"svc": "api"}},
		{Name: "worker", Tags: map[string]string{"svc": "worker", "tier": "batch"}},
		{Name: "web", Tags: map[string]string{"svc": "web"}},
		{Name: "mixed", Tags: map[string]string{"zone": "a", "tier": "gold", "svc": "api"}},
		{Name: "bare"},
		{Name: "redef", Tags: map[string]string{"role": "db"}},
	}}
	ok, rejected := checkWorkloads(rec, cert)
	want := map[int]string{
		2: "tag svc=web not allowed by the node's certificate",
		3: "tag tier=gold not allowed by the node's certificate", // svc=api is allowed; tier < zone
		5: "tag role redefines a node tag",
	}
	if fmt.Sprint(rejected) != fmt.Sprint(want) {
		t.Errorf("rejected %v\nwant     %v", rejected, want)
	}
	if names := countedNames(ok); fmt.Sprint(names) != "[api worker bare]" {
		t.Errorf("counted %v", names)
	}
	// The same record in trust: open: all but the redefinition count.
	if ok, rejected := checkWorkloads(rec, nil); len(ok) != 5 || len(rejected) != 1 {
		t.Errorf("open: %v counted, rejected %v", ok, rejected)
	}
	// A certificate that allows no workload tags.
	plain := wlCert(t)
	if ok, rejected := checkWorkloads(rec, plain); fmt.Sprint(countedNames(ok)) != "[bare]" ||
		rejected[0] != "tag svc=api not allowed by the node's certificate" || len(rejected) != 5 {
		t.Errorf("plain certificate: %v counted, rejected %v", ok, rejected)
	}
}

// countedNames lists the workloads' names.
func countedNames(ws []acl.Workload) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Name
	}
	return out
}

// TestJudgeWorkloads: this node's own workloads are judged as its peers
// judge them, keyed by name.
func TestJudgeWorkloads(t *testing.T) {
	cert := wlCert(t, ca.TagPair{Key: "svc", Value: "api"})
	ws := []config.Workload{
		{Name: "api", Unit: "api.service", Tags: map[string]string{"svc": "api"}},
		{Name: "web", Unit: "nginx.service", Tags: map[string]string{"svc": "web"}},
		{Name: "cron", Cgroup: "/system.slice/cron.service"},
	}
	ok, rejected := judgeWorkloads(cert.Tags, ws, cert)
	if fmt.Sprint(countedNames(ok)) != "[api cron]" || ok[0].Tags["svc"] != "api" {
		t.Errorf("counted %+v", ok)
	}
	if want := map[string]string{"web": "tag svc=web not allowed by the node's certificate"}; fmt.Sprint(rejected) != fmt.Sprint(want) {
		t.Errorf("rejected %v, want %v", rejected, want)
	}
	if ok, rejected := judgeWorkloads(map[string]string{"role": "app"}, ws, nil); len(ok) != 3 || rejected != nil {
		t.Errorf("open: %+v counted, rejected %v", ok, rejected)
	}
	if ok, rejected := judgeWorkloads(nil, nil, cert); ok != nil || rejected != nil {
		t.Errorf("no workloads: %v %v", ok, rejected)
	}
}
