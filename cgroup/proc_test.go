package cgroup

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestLevel(t *testing.T) {
	for p, want := range map[string]int{"/": 0, "": 0, "/a": 1, "/a/b": 2, "/system.slice/api.service": 2, "/a/b/": 2} {
		if got := Level(p); got != want {
			t.Errorf("Level(%q) = %d, want %d", p, got, want)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	hybridText := "9:name=systemd:/\n4:memory:/process_api/b12b\n0::/system.slice/api.service\n"
	if got, err := ParseProcCgroup(strings.NewReader(hybridText)); err != nil || got != "/system.slice/api.service" {
		t.Fatalf("hybrid: %q, %v", got, err)
	}
	if got, err := ParseProcCgroup(strings.NewReader("0::/gone (deleted)\n")); err != nil || got != "/gone" {
		t.Fatalf("deleted: %q, %v", got, err)
	}
	if _, err := ParseProcCgroup(strings.NewReader("4:memory:/x\n")); !errors.Is(err, ErrNoV2Line) {
		t.Fatalf("v1 only: %v", err)
	}
}

func TestMatch(t *testing.T) {
	sts := []Status{
		{Name: "slice", State: Active, Path: "/system.slice", Level: 1},
		{Name: "api", State: Active, Path: "/system.slice/api.service", Level: 2},
		{Name: "gone", State: Missing, Path: "/system.slice/api.service/sub", Level: 3},
		{Name: "apix", State: Active, Path: "/system.slice/api.servicex", Level: 2},
	}
	for cg, want := range map[string]string{
		"/system.slice/api.service":          "api",
		"/system.slice/api.service/sub/deep": "api", // the deeper one is Missing
		"/system.slice/db.service":           "slice",
		"/system.slice/api.servicexy":        "slice",
		"/user.slice":                        "",
	} {
		got, ok := Match(cg, sts)
		if got != want || ok != (want != "") {
			t.Errorf("Match(%q) = %q, %v; want %q", cg, got, ok, want)
		}
	}
}

func TestWorkloadOfSelf(t *testing.T) {
	cg, err := PidCgroup(os.Getpid())
	if errors.Is(err, ErrNoV2Line) {
		t.Skip("no cgroup2 line for this process")
	}
	if err != nil {
		t.Fatal(err)
	}
	name, ok, err := WorkloadOf(os.Getpid(), []Status{{Name: "me", State: Active, Path: cg, Level: Level(cg)}})
	if err != nil || !ok || name != "me" {
		t.Fatalf("WorkloadOf(self in %s) = %q, %v, %v", cg, name, ok, err)
	}
	if _, _, err := WorkloadOf(-1, nil); err == nil {
		t.Fatal("WorkloadOf(-1) without error")
	}
}
