package cgrouptest

import (
	"testing"

	"github.com/segmesh/segmesh/cgroup"
)

func TestFake(t *testing.T) {
	f := New([]cgroup.Workload{{Name: "api", Path: "/system.slice/api.service"}, {Name: "db", Unit: "db.service"}})
	sts := f.Statuses()
	if len(sts) != 2 || sts[0].State != cgroup.Missing || sts[0].Level != 2 || sts[1].Path != "" {
		t.Fatalf("initial: %+v", sts)
	}
	if !f.Activate("api", "/system.slice/api.service", 42) {
		t.Fatal("Activate api")
	}
	select {
	case <-f.Changes():
	default:
		t.Fatal("no change after Activate")
	}
	if name, ok := cgroup.Match("/system.slice/api.service/x", f.Statuses()); !ok || name != "api" {
		t.Fatalf("Match: %q %v", name, ok)
	}
	if f.Activate("nope", "/x", 1) {
		t.Fatal("Activate of an undeclared workload")
	}
	if err := f.Update([]cgroup.Workload{{Name: "api", Path: "/system.slice/api.service"}}); err != nil {
		t.Fatal(err)
	}
	if sts := f.Statuses(); len(sts) != 1 || sts[0].State != cgroup.Active || sts[0].ID != 42 {
		t.Fatalf("after Update (api kept active): %+v", sts)
	}
	if err := f.Update([]cgroup.Workload{{Name: "bad"}}); err == nil {
		t.Fatal("invalid Update accepted")
	}
	if d, n := f.Declared(); len(d) != 1 || n != 1 {
		t.Fatalf("Declared: %+v %d", d, n)
	}
	f.Deactivate("api")
	if s := f.Statuses()[0]; s.State != cgroup.Missing || s.ID != 0 || s.Path == "" {
		t.Fatalf("Deactivate: %+v", s)
	}
	_ = f.Close()
	if !f.Closed() {
		t.Fatal("not closed")
	}
}
