package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/config"
)

// initTestRoot carries init and config as newRoot wires them.
func initTestRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{Use: "segmesh", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVarP(&g.configFile, "config", "c", config.DefaultPath, "config file")
	root.AddCommand(newInit(), newConfigCmd(g))
	return root
}

func runInit(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := initTestRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestInitWorkloads(t *testing.T) {
	dir := t.TempDir()
	out, err := runInit(t, "init", "--dir", dir, "--advertise", "192.0.2.1", "--tags", "role=db",
		"--workload", "api:api.service:svc=api,tier=front",
		"--workload", "batch:/system.slice/batch.slice:svc=batch",
		"--workload", "plain:plain.service")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	cfgFile := filepath.Join(dir, "segmesh.yaml")
	c, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	want := []config.Workload{
		{Name: "api", Unit: "api.service", Tags: map[string]string{"svc": "api", "tier": "front"}},
		{Name: "batch", Cgroup: "/system.slice/batch.slice", Tags: map[string]string{"svc": "batch"}},
		{Name: "plain", Unit: "plain.service", Tags: map[string]string{}},
	}
	if !reflect.DeepEqual(c.Workloads, want) {
		t.Fatalf("workloads = %+v\nwant %+v", c.Workloads, want)
	}
	if out, err := runInit(t, "config", "check", "-c", cfgFile); err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("config check: %q %v", out, err)
	}
}

func TestInitWorkloadErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no unit", []string{"--workload", "api"}, "want NAME:UNIT"},
		{"bad tag", []string{"--workload", "api:api.service:svc"}, "workloads[0].unit"},
		{"bad tag syntax", []string{"--workload", "api:api.service:=x"}, "bad tag"},
		{"bad name", []string{"--workload", "API:api.service"}, "workloads[0].name"},
		{"duplicate", []string{"--workload", "api:a.service", "--workload", "api:b.service"}, "workloads[1].name"},
		{"relative cgroup is a unit", []string{"--workload", "api:system.slice/a.service"}, "workloads[0].unit"},
		{"cgroup dotdot", []string{"--workload", "api:/system.slice/../a"}, "workloads[0].cgroup"},
		{"node tag", []string{"--tags", "svc=x", "--workload", "api:a.service:svc=api"}, "workloads[0].tags.svc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := runInit(t, append([]string{"init", "--dir", dir}, tc.args...)...)
			wantExit(t, err, 2)
			if !strings.Contains(err.Error(), "--workload") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want --workload and %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "segmesh.yaml")); err == nil {
				t.Fatal("a refused --workload must write nothing")
			}
		})
	}
}

func TestInitTooManyWorkloads(t *testing.T) {
	args := []string{"init", "--dir", t.TempDir()}
	for i := range config.MaxWorkloads + 1 {
		args = append(args, "--workload", "w"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26))+":w.service")
	}
	_, err := runInit(t, args...)
	wantExit(t, err, 2)
	if !strings.Contains(err.Error(), "workloads: 33 workloads: at most 32") {
		t.Fatalf("error %v", err)
	}
}

func TestConfigExampleListsWorkloads(t *testing.T) {
	out, err := runInit(t, "config", "example")
	if err != nil || !strings.Contains(out, "\nworkloads: []\n") || !strings.Contains(out, "#   - name: api\n") {
		t.Fatalf("config example lacks workloads: %v\n%s", err, out)
	}
}

// TestInitJoinNeedsClusterKey: `init --join` without a cluster key writes
// nothing and says to copy the mesh's key first (exit 2); with the key
// copied it keeps that key.
func TestInitJoinNeedsClusterKey(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	_, err := runInit(t, "init", "--dir", dir, "--name", "db-1", "--advertise", "192.0.2.11", "--join", "192.0.2.10:7946")
	wantExit(t, err, 2)
	for _, want := range []string{"no cluster key at " + key, "copy the mesh's cluster key to this node FIRST",
		"scp -p root@192.0.2.10:" + key + " " + key, "nothing written"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	for _, f := range []string{"segmesh.yaml", "private.key", "cluster.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("a refused init --join wrote %s", f)
		}
	}

	// The first node's key, copied as the message says: init keeps it.
	first := t.TempDir()
	if _, err := runInit(t, "init", "--dir", first, "--name", "web-1", "--advertise", "192.0.2.10"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(first, "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runInit(t, "init", "--dir", dir, "--name", "db-1", "--advertise", "192.0.2.11", "--join", "192.0.2.10:7946")
	if err != nil {
		t.Fatalf("init --join with the cluster key: %v\n%s", err, out)
	}
	if !strings.Contains(out, "kept "+key) {
		t.Errorf("init did not keep the copied key:\n%s", out)
	}
	if got, _ := os.ReadFile(key); !bytes.Equal(got, b) {
		t.Error("the copied cluster key was changed")
	}

	// Without --join (a first node) init still writes a new key.
	if _, err := runInit(t, "init", "--dir", t.TempDir()); err != nil {
		t.Fatalf("init without --join: %v", err)
	}
}
