package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyCheck: `segmesh policy check FILE` runs offline (no root, no
// daemon, no config): a broken file exits 1 with one file:line:col line per
// error; a file whose tests fail exits 1 pointing at the failing tests; a
// good one exits 0.
func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name    string
		content string
		code    int
		want    []string // positions "line:col" with a word of the message
	}{
		{
			name: "broken",
			content: `mode: enforce
segments:
  web: {role: web}
  app: {}
rules:
  - name: r1
    from: [web]
    to: [nosuch]
    ports: [tcp/99999, icmp]
    colour: red
  - name: r2
    from: [web]
    to: [app]
    ports: [tcp/80-20, sctp/5]
`,
			code: 1,
			want: []string{
				"4:8: segment \"app\" has an empty selector",
				"8:10: undefined segment \"nosuch\"",
				"9:13: \"tcp/99999\"",
				"10:5: unknown key \"colour\"",
				"14:13: \"tcp/80-20\"",
				"14:24: \"sctp/5\"",
			},
		},
		{
			name: "failing tests",
			content: `mode: enforce
segments:
  web: {role: web}
  db: {role: db}
rules:
  - {name: web-to-db, from: [web], to: [db], ports: [tcp/5432]}
tests:
  - {from: web, to: db, port: tcp/5432, expect: allow}
  - {from: web, to: db, port: tcp/5433, expect: allow}
  - {from: db, to: web, port: tcp/5432, expect: allow}
`,
			code: 1,
			want: []string{"9:5:", "10:5:"},
		},
		{name: "good", content: matrixPolicy, code: 0},
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(cs.name, " ", "-")+".yaml")
			if err := os.WriteFile(file, []byte(cs.content), 0o644); err != nil {
				t.Fatal(err)
			}
			// A config path that does not exist: check must not need one.
			r := segmeshCLI(t, "policy", "check", file, "-c", filepath.Join(dir, "absent.yaml"))
			if r.code != cs.code {
				t.Fatalf("exit %d, want %d: %v", r.code, cs.code, r)
			}
			out := r.stdout + r.stderr
			for _, w := range cs.want {
				if !strings.Contains(out, file+":"+w) {
					t.Errorf("output lacks %q:\n%s", file+":"+w, out)
				}
			}
			if lines := strings.Count(out, file+":"); lines < len(cs.want) {
				t.Errorf("%d file:line:col lines, want %d:\n%s", lines, len(cs.want), out)
			}
			if cs.code == 0 && !strings.Contains(r.stdout, "ok") {
				t.Errorf("a good policy: %v", r)
			}
		})
	}
}
