package node

import (
	"slices"
	"testing"

	"github.com/segmesh/segmesh/acl/nft"
	"github.com/segmesh/segmesh/api"
)

// The node follows its workloads' cgroups: the egress it enforces has a
// local identity per workload, with the cgroup once it exists and none
// again once it is gone; status shows the state; the record carries the
// workloads; a reload adds one.
func TestLocalWorkloadsFollowed(t *testing.T) {
	dir := t.TempDir()
	newRig(t, dir, "").shutdown() // initialise the directory
	setWorkloads(t, dir, "workloads:\n  - {name: api, cgroup: /system.slice/api.service, tags: {svc: api}}\n")
	r := newRig(t, dir, "")
	egress := func() nft.Egress { e, _ := r.fw.lastEgress(); return e }
	waitFor(t, "egress with the api workload", func() bool {
		e := egress()
		return len(e.Locals) == 2 && e.Locals[0].Name == "" && e.Locals[1].Name == "api" && len(e.Locals[1].Cgroups) == 0
	})
	self := func() []api.Workload { return r.n.Status().Self.Workloads }
	if w := self(); len(w) != 1 || w[0].State != api.WorkloadMissing || w[0].Cgroup != "/system.slice/api.service" {
		t.Fatalf("self workloads while missing: %+v", w)
	}
	if rec := r.n.record(); len(rec.Workloads) != 1 || rec.Workloads[0].Name != "api" || rec.Workloads[0].Tags["svc"] != "api" {
		t.Fatalf("record workloads: %+v", rec.Workloads)
	}

	r.cg.Activate("api", "/system.slice/api.service", 4242)
	waitFor(t, "api's cgroup in egress", func() bool {
		e := egress()
		return len(e.Locals) == 2 && slices.Equal(e.Locals[1].Cgroups, []nft.Cgroup{{ID: 4242, Level: 2}})
	})
	if w := self(); w[0].State != api.WorkloadActive || w[0].Tags["svc"] != "api" {
		t.Fatalf("self workloads when active: %+v", w)
	}
	// A restart: a new id.
	r.cg.Activate("api", "/system.slice/api.service", 4343)
	waitFor(t, "api's new cgroup id in egress", func() bool {
		e := egress()
		return len(e.Locals) == 2 && slices.Equal(e.Locals[1].Cgroups, []nft.Cgroup{{ID: 4343, Level: 2}})
	})
	r.cg.Deactivate("api")
	waitFor(t, "api without cgroup", func() bool { e := egress(); return len(e.Locals) == 2 && len(e.Locals[1].Cgroups) == 0 })

	setWorkloads(t, dir, "workloads:\n  - {name: api, cgroup: /system.slice/api.service, tags: {svc: api}}\n  - {name: cron, cgroup: /system.slice/cron.service}\n")
	if err := r.n.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cron after reload", func() bool { e := egress(); return len(e.Locals) == 3 && e.Locals[2].Name == "cron" })
	if d, _ := r.cg.Declared(); len(d) != 2 {
		t.Fatalf("declared after reload: %+v", d)
	}
}

func TestKernelVersion(t *testing.T) {
	for _, c := range []struct {
		rel          string
		major, minor int
		ok           bool
	}{{"6.1.0-13-amd64", 6, 1, true}, {"5.13", 5, 13, true}, {"5.4.0-foo", 5, 4, true}, {"4.19rc1", 4, 19, true}, {"x", 0, 0, false}} {
		major, minor, ok := kernelVersion(c.rel)
		if major != c.major || minor != c.minor || ok != c.ok {
			t.Errorf("kernelVersion(%q) = %d, %d, %v", c.rel, major, minor, ok)
		}
	}
	if err := checkKernel(); err != nil {
		t.Errorf("this machine's kernel: %v", err)
	}
}
