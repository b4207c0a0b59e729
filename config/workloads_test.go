package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// withWorkloads is writeDir with the workloads key replaced by text.
func withWorkloads(t *testing.T, text string) string {
	t.Helper()
	path := writeDir(t, "")
	rewrite(t, path, "workloads: []\n", text)
	return path
}

func TestWorkloadsLoad(t *testing.T) {
	path := withWorkloads(t, `workloads:
  - name: api
    unit: api.service
    tags: {svc: api, Tier: Front}
  - name: batch-2
    cgroup: /system.slice/batch.slice/nightly.service
  - name: inst
    unit: getty@tty1.service
    tags:
      svc: getty
  - name: sc
    unit: run-u42.scope
    tags: {}
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Workload{
		{Name: "api", Unit: "api.service", Tags: map[string]string{"svc": "api", "tier": "Front"}},
		{Name: "batch-2", Cgroup: "/system.slice/batch.slice/nightly.service", Tags: map[string]string{}},
		{Name: "inst", Unit: "getty@tty1.service", Tags: map[string]string{"svc": "getty"}},
		{Name: "sc", Unit: "run-u42.scope", Tags: map[string]string{}},
	}
	if !reflect.DeepEqual(c.Workloads, want) {
		t.Fatalf("workloads = %+v\nwant %+v", c.Workloads, want)
	}
	if c.Tags["role"] != "db" || len(c.Tags) != 1 {
		t.Fatalf("workload tags must not change the node's tags key: %v", c.Tags)
	}
}

func TestWorkloadsAbsentOrEmpty(t *testing.T) {
	for _, extra := range []string{"", "workloads:\n", "workloads: []\n"} {
		path := writeDir(t, "")
		if extra != "" {
			rewrite(t, path, "workloads: []\n", extra)
		}
		c, err := Load(path)
		if err != nil {
			t.Fatalf("%q: %v", extra, err)
		}
		if len(c.Workloads) != 0 {
			t.Fatalf("%q: workloads %v", extra, c.Workloads)
		}
	}
}

func TestWorkloadsMax(t *testing.T) {
	var b strings.Builder
	b.WriteString("workloads:\n")
	for i := range MaxWorkloads {
		fmt.Fprintf(&b, "  - {name: w%d, unit: w%d.service}\n", i, i)
	}
	path := withWorkloads(t, b.String())
	c, err := Load(path)
	if err != nil || len(c.Workloads) != MaxWorkloads {
		t.Fatalf("%d workloads must load: %v", MaxWorkloads, err)
	}
	b.WriteString("  - {name: one-more, unit: x.service}\n")
	_, err = Load(withWorkloads(t, b.String()))
	wantKeyErr(t, err, "workloads", "at most 32")
}

func wantKeyErr(t *testing.T, err error, key, text string) {
	t.Helper()
	if err == nil || !IsConfigError(err) {
		t.Fatalf("want a config error for %s, got %v", key, err)
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if _, rest, ok := strings.Cut(line, ".yaml: "); ok && strings.HasPrefix(rest, key+": ") && strings.Contains(rest, text) {
			return
		}
	}
	t.Fatalf("no error naming the file and key %q with %q:\n%v", key, text, err)
}

func TestWorkloadsErrors(t *testing.T) {
	cases := []struct {
		name, yaml, key, text string
	}{
		{"duplicate name", "  - {name: api, unit: a.service}\n  - {name: api, unit: b.service}\n", "workloads[1].name", "already the name of workloads[0]"},
		{"bad name upper", "  - {name: Api, unit: a.service}\n", "workloads[0].name", "[a-z0-9-]"},
		{"bad name long", "  - {name: " + strings.Repeat("a", 33) + ", unit: a.service}\n", "workloads[0].name", "1-32"},
		{"no name", "  - {unit: a.service}\n", "workloads[0].name", `""`},
		{"both", "  - {name: api, unit: a.service, cgroup: /system.slice/a.service}\n", "workloads[0]", "both unit and cgroup"},
		{"neither", "  - {name: api, tags: {svc: api}}\n", "workloads[0]", "neither unit nor cgroup"},
		{"unit with slash", "  - {name: api, unit: system.slice/a.service}\n", "workloads[0].unit", "no '/'"},
		{"unit bad suffix", "  - {name: api, unit: a.socket}\n", "workloads[0].unit", ".service, .scope or .slice"},
		{"unit no suffix", "  - {name: api, unit: api}\n", "workloads[0].unit", ".service, .scope or .slice"},
		{"unit root slice", "  - {name: api, unit: \"-.slice\"}\n", "workloads[0].unit", "root slice"},
		{"unit template", "  - {name: api, unit: getty@.service}\n", "workloads[0].unit", "template"},
		{"unit space", "  - {name: api, unit: \"a b.service\"}\n", "workloads[0].unit", "systemd unit name"},
		{"cgroup relative", "  - {name: api, cgroup: system.slice/a.service}\n", "workloads[0].cgroup", "absolute"},
		{"cgroup root", "  - {name: api, cgroup: /}\n", "workloads[0].cgroup", "root cgroup"},
		{"cgroup dotdot", "  - {name: api, cgroup: /system.slice/../a.service}\n", "workloads[0].cgroup", "clean"},
		{"cgroup trailing dotdot", "  - {name: api, cgroup: /system.slice/..}\n", "workloads[0].cgroup", "clean"},
		{"cgroup trailing slash", "  - {name: api, cgroup: /system.slice/}\n", "workloads[0].cgroup", "clean"},
		{"cgroup double slash", "  - {name: api, cgroup: /system.slice//a.service}\n", "workloads[0].cgroup", "clean"},
		{"cgroup mount prefix", "  - {name: api, cgroup: /sys/fs/cgroup/system.slice/a.service}\n", "workloads[0].cgroup", "drop the /sys/fs/cgroup prefix"},
		{"tag redefines node tag", "  - {name: api, unit: a.service, tags: {role: web}}\n", "workloads[0].tags.role", "may not redefine the node tag role"},
		{"tag redefines node tag case", "  - {name: api, unit: a.service, tags: {ROLE: web}}\n", "workloads[0].tags.role", "may not redefine"},
		{"bad tag value", "  - {name: api, unit: a.service, tags: {svc: \"a b\"}}\n", "workloads[0].tags.svc", "1-63 of"},
		{"tags not a map", "  - {name: api, unit: a.service, tags: svc=api}\n", "workloads[0].tags", "want a map of strings"},
		{"unknown entry key", "  - {name: api, unit: a.service, units: b.service}\n", "workloads[0].units", "unknown key"},
		{"entry not a map", "  - api\n  - {name: web, unit: a.service, tags: {role: x}}\n", "workloads[0]", "want a map"},
		{"index after non-map", "  - api\n  - {name: web, unit: a.service, tags: {role: x}}\n", "workloads[1].tags.role", "may not redefine"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(withWorkloads(t, "workloads:\n"+tc.yaml))
			wantKeyErr(t, err, tc.key, tc.text)
		})
	}
}

func TestWorkloadsNotAList(t *testing.T) {
	for _, y := range []string{"workloads: api\n", "workloads:\n  api:\n    unit: a.service\n"} {
		_, err := Load(withWorkloads(t, y))
		wantKeyErr(t, err, "workloads", "want a list")
	}
}

func TestWorkloadsEnvIsAnError(t *testing.T) {
	path := writeDir(t, "")
	t.Setenv("SEGMESH_WORKLOADS", "api:api.service")
	_, err := Load(path)
	wantKeyErr(t, err, "workloads", "SEGMESH_WORKLOADS")
}

func TestParseWorkload(t *testing.T) {
	good := map[string]Workload{
		"api:api.service:svc=api,tier=front": {Name: "api", Unit: "api.service", Tags: map[string]string{"svc": "api", "tier": "front"}},
		"api:api.service":                    {Name: "api", Unit: "api.service", Tags: map[string]string{}},
		"api:api.service:":                   {Name: "api", Unit: "api.service", Tags: map[string]string{}},
		"b:/system.slice/b.service:svc=b":    {Name: "b", Cgroup: "/system.slice/b.service", Tags: map[string]string{"svc": "b"}},
		"f:systemd-fsck@a:b.service:k=v":     {Name: "f", Unit: "systemd-fsck@a:b.service", Tags: map[string]string{"k": "v"}},
		"f:systemd-fsck@a:b.service":         {Name: "f", Unit: "systemd-fsck@a:b.service", Tags: map[string]string{}},
	}
	for s, want := range good {
		w, err := ParseWorkload(s)
		if err != nil || !reflect.DeepEqual(w, want) {
			t.Errorf("ParseWorkload(%q) = %+v, %v; want %+v", s, w, err, want)
		}
	}
	for _, s := range []string{"", "api", "api:", "api:a.service:svc=a b", "api:a.service:=v"} {
		if w, err := ParseWorkload(s); err == nil {
			t.Errorf("ParseWorkload(%q) = %+v, want an error", s, w)
		}
	}
	// A last part without '=' belongs to the unit, which validation refuses.
	w, err := ParseWorkload("api:a.service:svc")
	if err != nil || ValidateWorkloads(nil, []Workload{w}) == nil {
		t.Errorf("api:a.service:svc: %+v, %v: want a unit refused by validation", w, err)
	}
}

func TestValidateWorkloadsKeys(t *testing.T) {
	err := ValidateWorkloads(map[string]string{"role": "db"}, []Workload{
		{Name: "api", Unit: "api.service", Tags: map[string]string{"role": "x"}},
		{Name: "api", Cgroup: "relative"},
	})
	for _, want := range []string{"workloads[0].tags.role: ", "workloads[1].name: ", "workloads[1].cgroup: "} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
	if err := ValidateWorkloads(nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestInitWritesWorkloads(t *testing.T) {
	dir := t.TempDir()
	ws := []Workload{
		{Name: "api", Unit: "api.service", Tags: map[string]string{"svc": "api"}},
		{Name: "b", Cgroup: "/system.slice/b.service", Tags: map[string]string{}},
	}
	r, err := InitDir(InitOptions{Dir: dir, Name: "n", Advertise: "192.0.2.1", Tags: map[string]string{"role": "db"}, Workloads: ws})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(r.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Workloads, ws) {
		t.Fatalf("round trip: %+v, want %+v", c.Workloads, ws)
	}
	bad := t.TempDir()
	_, err = InitDir(InitOptions{Dir: bad, Tags: map[string]string{"svc": "x"}, Workloads: ws})
	if err == nil || !strings.Contains(err.Error(), "workloads[0].tags.svc: ") {
		t.Fatalf("init must refuse a workload redefining a node tag: %v", err)
	}
}

func TestRenderListsWorkloadsExample(t *testing.T) {
	text := Render(InitValues{Interface: DefaultInterface, PrivateKeyFile: DefaultKeyFile, SecretFile: DefaultSecretFile})
	for _, want := range []string{"\nworkloads: []\n", "#   - name: api\n", "#     unit: api.service", "cgroup: /system.slice/api.service"} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered config lacks %q", want)
		}
	}
}
