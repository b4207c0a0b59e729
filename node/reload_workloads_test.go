package node

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/segmesh/segmesh/config"
)

// setWorkloads replaces the workloads key of dir/segmesh.yaml.
func setWorkloads(t *testing.T, dir, text string) {
	t.Helper()
	p := filepath.Join(dir, "segmesh.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "\nworkloads:")
	end := strings.Index(s, "\npolicy_file:")
	if start < 0 || end < start {
		t.Fatalf("no workloads key in %s", p)
	}
	if err := os.WriteFile(p, []byte(s[:start+1]+text+s[end:]), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) workloads() []config.Workload {
	r.n.mu.Lock()
	defer r.n.mu.Unlock()
	return r.n.cfg.Workloads
}

// A changed workloads list is taken over by reload and logged; an invalid
// one keeps the running list.
func TestReloadWorkloads(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, dir, "")
	if len(r.workloads()) != 0 {
		t.Fatalf("workloads at start: %v", r.workloads())
	}
	setWorkloads(t, dir, "workloads:\n  - {name: api, unit: api.service, tags: {svc: api}}\n  - {name: job, cgroup: /system.slice/job.service}\n")
	if err := r.n.Reload(); err != nil {
		t.Fatal(err)
	}
	want := []config.Workload{
		{Name: "api", Unit: "api.service", Tags: map[string]string{"svc": "api"}},
		{Name: "job", Cgroup: "/system.slice/job.service", Tags: map[string]string{}},
	}
	if !reflect.DeepEqual(r.workloads(), want) {
		t.Fatalf("after reload: %+v, want %+v", r.workloads(), want)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, `msg="reload: workloads changed" workloads="[api=api.service job=/system.slice/job.service]" before=[]`) {
		t.Fatalf("no workloads changed log:\n%s", logs)
	}
	if strings.Contains(logs, "needs a restart") {
		t.Fatalf("workloads must not need a restart:\n%s", logs)
	}

	// Unchanged: no new log line.
	if err := r.n.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(r.logs.String(), "workloads changed"); n != 1 {
		t.Fatalf("%d workloads changed lines after an unchanged reload", n)
	}

	// Invalid (redefines the node tag role): refused, the running list kept.
	setWorkloads(t, dir, "workloads:\n  - {name: api, unit: api.service, tags: {role: web}}\n")
	err := r.n.Reload()
	if err == nil || !strings.Contains(err.Error(), "workloads[0].tags.role") {
		t.Fatalf("invalid workloads: reload error %v", err)
	}
	if !reflect.DeepEqual(r.workloads(), want) {
		t.Fatalf("a refused reload changed the workloads: %+v", r.workloads())
	}

	// Removed: the list empties.
	setWorkloads(t, dir, "workloads: []\n")
	if err := r.n.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(r.workloads()) != 0 {
		t.Fatalf("workloads after removal: %v", r.workloads())
	}
	if !strings.Contains(r.logs.String(), `workloads=[] before="[api=api.service job=/system.slice/job.service]"`) {
		t.Fatalf("removal not logged:\n%s", r.logs.String())
	}
}
