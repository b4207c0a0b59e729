package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/fleetmap"
)

// fakeMapDaemon serves what `segmesh map` asks for on a unix socket and
// records the paths asked.
func fakeMapDaemon(t *testing.T) (socket string, paths func() []string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	now := time.Now()
	flow := in("", "web-1", sWeb, sApp, "allowed", "tcp", 8080, 3, 0)
	flow.LastSeen = now
	fleetFlow := in("db-1", "app-1", sAA, sDB, "audited", "tcp", 5432, 4, 0)
	fleetFlow.LastSeen = now
	answers := map[string]any{
		"/v1/status":   api.Status{Self: api.Self{Name: "app-1"}},
		"/v1/segments": mapSegments(),
		"/v1/policy":   api.PolicyDocument{Version: 2, Content: mapTestPolicy},
		"/v1/flows":    []api.Flow{flow},
		"/v1/fleet/flows": api.FleetFlows{
			Flows:   []api.Flow{fleetFlow},
			Missing: []api.Missing{{Node: "web-2", Reason: "timeout after 2s"}},
		},
	}
	sock := serveFake(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		a, ok := answers[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(a)
	}))
	return sock, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

func runMap(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var o, e bytes.Buffer
	root.SetOut(&o)
	root.SetErr(&e)
	root.SetArgs(append([]string{"map"}, args...))
	err = root.Execute()
	return o.String(), e.String(), err
}

func TestMapCommandBadFlags(t *testing.T) {
	sock, paths := fakeMapDaemon(t)
	for _, args := range [][]string{{"--format", "png"}, {"--since", "-5m"}} {
		_, _, err := runMap(t, append(args, "--socket", sock)...)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: exit %d, %v", args, exitCode(err), err)
		}
	}
	if p := paths(); len(p) != 0 {
		t.Errorf("daemon asked %v before the flags were checked", p)
	}
}

func TestMapCommandLocal(t *testing.T) {
	sock, paths := fakeMapDaemon(t)
	stdout, stderr, err := runMap(t, "--socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout, "flowchart LR\n") || !strings.Contains(stdout, "allowed: tcp/8080, 3 conn") || stderr != "" {
		t.Fatalf("stdout:\n%s\nstderr: %q", stdout, stderr)
	}
	for _, p := range paths() {
		if p == "/v1/fleet/flows" {
			t.Fatal("local map asked for the fleet's flows")
		}
	}
}

func TestMapCommandFleetOut(t *testing.T) {
	sock, _ := fakeMapDaemon(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "map.json")
	if err := os.WriteFile(file, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runMap(t, "--socket", sock, "--fleet", "--format", "json", "--since", "1h", "--out", file)
	if err != nil || exitCode(err) != 0 {
		t.Fatalf("exit %d: %v", exitCode(err), err)
	}
	if stdout != "" {
		t.Errorf("stdout with --out: %q", stdout)
	}
	if want := "warning: 1 node(s) did not answer, their observations are not included: web-2 (timeout after 2s)\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("stat %v, %v", st, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
	b, _ := os.ReadFile(file)
	var m fleetmap.Map
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if len(m.Missing) != 1 || m.Missing[0].Node != "web-2" || m.Since != time.Hour {
		t.Errorf("missing %v since %v", m.Missing, m.Since)
	}
	if len(m.Edges) != 2 || m.Edges[0].Verdict != "audited" || m.Edges[0].To != "db" {
		t.Errorf("edges %+v", m.Edges)
	}
}

func TestMapCommandFormats(t *testing.T) {
	sock, _ := fakeMapDaemon(t)
	for format, prefix := range map[string]string{"dot": "digraph segmesh {", "svg": "<svg", "mermaid": "flowchart LR"} {
		stdout, _, err := runMap(t, "--socket", sock, "--format", format)
		if err != nil || !strings.Contains(stdout, prefix) {
			t.Errorf("%s: %v\n%.200s", format, err, stdout)
		}
	}
}
