package main

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/mesh"
)

// TestCLICertIssueWorkloadTags: --workload-tags is repeatable, one key may
// have several values, the pairs land sorted in the certificate and show
// lists them; a node tag key or a bad pair is a usage error.
func TestCLICertIssueWorkloadTags(t *testing.T) {
	caDir := newTestCA(t)
	caKey, caPub := filepath.Join(caDir, "ca.key"), filepath.Join(caDir, "ca.pub")
	k, _ := mesh.GenerateKey()
	pub := k.PublicKey().String()
	dir := t.TempDir()
	crt := filepath.Join(dir, "app-1.crt")
	out := mustRun(t, "cert", "issue", "--ca-key", caKey, "--name", "app-1", "--public-key", pub, "--tags", "role=app",
		"--workload-tags", "svc=worker,svc=api", "--workload-tags", "Tier=batch,svc=api", "--out", crt)
	if !strings.Contains(out, "workload tags svc=api,svc=worker,tier=batch") {
		t.Errorf("issue output:\n%s", out)
	}
	s, err := ca.LoadCertificate(crt)
	if err != nil {
		t.Fatal(err)
	}
	want := []ca.TagPair{{Key: "svc", Value: "api"}, {Key: "svc", Value: "worker"}, {Key: "tier", Value: "batch"}}
	if s.Format != ca.CertFormatWorkloadTags || !reflect.DeepEqual(s.WorkloadTags, want) {
		t.Fatalf("certificate: format %d, workload tags %v", s.Format, s.WorkloadTags)
	}
	out = mustRun(t, "cert", "show", crt, "--ca", caPub)
	if !strings.Contains(out, "workload tags: svc=api,svc=worker,tier=batch\n") || !strings.Contains(out, "verification: ok") {
		t.Errorf("show:\n%s", out)
	}
	out = mustRun(t, "cert", "show", "--json", crt)
	var js struct {
		WorkloadTags []string `json:"workload_tags"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || strings.Join(js.WorkloadTags, ",") != "svc=api,svc=worker,tier=batch" {
		t.Fatalf("show --json: %v %+v\n%s", err, js, out)
	}

	// Without the flag: format 1, none allowed, and show says so.
	plain := filepath.Join(dir, "plain.crt")
	mustRun(t, "cert", "issue", "--ca-key", caKey, "--name", "app-2", "--public-key", pub, "--out", plain)
	if s, err := ca.LoadCertificate(plain); err != nil || s.Format != ca.CertFormat || s.WorkloadTags != nil {
		t.Fatalf("plain certificate: %v %+v", err, s)
	}
	if out := mustRun(t, "cert", "show", plain); !strings.Contains(out, "workload tags: (none)\n") {
		t.Errorf("show plain:\n%s", out)
	}
	if out := mustRun(t, "cert", "show", "--json", plain); strings.Contains(out, "workload_tags") {
		t.Errorf("show --json of a plain certificate lists workload tags:\n%s", out)
	}

	for name, flag := range map[string]string{"node tag key": "role=api", "no value": "svc", "bad value": "svc=a b"} {
		_, err := runCLI(t, "cert", "issue", "--ca-key", caKey, "--name", "a", "--public-key", pub, "--tags", "role=app",
			"--workload-tags", flag, "--out", filepath.Join(dir, "bad.crt"))
		wantExit(t, err, 2)
		if !strings.Contains(err.Error(), "--workload-tags") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
