package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/segmesh/segmesh/api"
)

// TestStatusOutput: status fits 80 columns by default, -o wide / --output
// wide shows every column, -o json is --json, another -o a usage error.
func TestStatusOutput(t *testing.T) {
	st := api.Status{
		Self: api.Self{Name: "app-1", PublicKey: "wJ3bqhMxX3i+M1Ms9ZtOkxKqh3yqPSPcBRzLkIRiJ3I=", Address: "100.80.2.5",
			Address6: "fd7a:115c:a1e0:ab12:4843:cd96:6258:b240", Endpoint: "198.51.100.20:51820"},
		Peers: []api.Peer{{Name: "db-1", State: api.StateUp, Address: "100.80.3.7", Address6: "fd7a:115c:a1e0:ab12:4843:cd96:6258:b241",
			Endpoint: "203.0.113.17:51820", Segments: []string{"db", "prod"}, Tags: map[string]string{"role": "db", "env": "prod", "zone": "eu-central-1a"},
			RxRate: 2048}},
	}
	sock := serveFake(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(st) }))

	out, _, err := runCmd("status", "--socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		if utf8.RuneCountInString(l) > 80 {
			t.Errorf("default: %d columns: %q", utf8.RuneCountInString(l), l)
		}
	}
	if strings.Contains(out, "ADDRESS6") || !strings.Contains(out, "\ndb-1 ") {
		t.Errorf("default:\n%s", out)
	}
	for _, flag := range []string{"-o", "--output"} {
		wide, _, err := runCmd("status", flag, "wide", "--socket", sock)
		if err != nil || !strings.Contains(wide, "ADDRESS6") || !strings.Contains(wide, "env=prod,role=db,zone=eu-central-1a") ||
			!strings.Contains(wide, "2.0KiB") {
			t.Errorf("%s wide: %v\n%s", flag, err, wide)
		}
	}
	js, _, err := runCmd("status", "-o", "json", "--socket", sock)
	var back api.Status
	if err != nil || json.Unmarshal([]byte(js), &back) != nil || back.Self.Name != "app-1" {
		t.Errorf("-o json: %v\n%s", err, js)
	}
	if _, _, err := runCmd("status", "-o", "yaml", "--socket", sock); exitCode(err) != 2 {
		t.Errorf("-o yaml: exit %d (%v), want 2", exitCode(err), err)
	}
}
