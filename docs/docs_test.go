// Tests that keep the operator docs in sync with the code.
package docs_test

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/node"
)

// TestConfigReferenceListsEveryKey fails when a config key exists in code
// (config.Keys) but has no row in docs/config.md, or when the doc has a row
// for a key the code does not know.
func TestConfigReferenceListsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("config.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_.]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		rows[m[1]] = true
	}
	known := map[string]bool{}
	for _, k := range config.Keys {
		known[k.Key] = true
		if !rows[k.Key] {
			t.Errorf("config key %q is not documented in docs/config.md (add a table row \"| `%s` | ...\")", k.Key, k.Key)
		}
	}
	for k := range rows {
		if !known[k] {
			t.Errorf("docs/config.md documents %q, which is not a config key", k)
		}
	}
}

// TestConfigReferenceExampleIsValid loads the complete example of
// docs/config.md with config.Load (key files provided), so it can hold no
// unknown key or bad value.
func TestConfigReferenceExampleIsValid(t *testing.T) {
	doc, err := os.ReadFile("config.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlocks(string(doc))
	if len(blocks) != 1 {
		t.Fatalf("want one yaml block in config.md, got %d", len(blocks))
	}
	dir := t.TempDir()
	r, err := config.InitDir(config.InitOptions{Dir: dir, Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("/etc/segmesh/private.key", r.KeyFile, "/etc/segmesh/cluster.key", r.ClusterKeyFile).Replace(blocks[0])
	path := dir + "/example.yaml"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.md example: %v", err)
	}
	if cfg.Name != "db-1" {
		t.Errorf("name = %q", cfg.Name)
	}
	for _, k := range config.Keys {
		top, _, _ := strings.Cut(k.Key, ".")
		if !regexp.MustCompile(`(?m)^\s*`+regexp.QuoteMeta(k.Key[strings.LastIndex(k.Key, ".")+1:])+`:`).MatchString(blocks[0]) || !strings.Contains(blocks[0], top+":") {
			t.Errorf("config.md example lacks key %q", k.Key)
		}
	}
}

// TestPolicyReferenceExamples parses every yaml block of docs/policy.md with
// the real parser and runs its tests.
func TestPolicyReferenceExamples(t *testing.T) {
	doc, err := os.ReadFile("policy.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlocks(string(doc))
	if len(blocks) < 2 {
		t.Fatalf("only %d yaml blocks in policy.md", len(blocks))
	}
	for i, b := range blocks {
		p, err := acl.Parse("policy.md", []byte(b))
		if err != nil {
			t.Errorf("policy.md block %d: %v", i+1, err)
			continue
		}
		if len(p.Tests) == 0 {
			t.Errorf("policy.md block %d has no tests", i+1)
		}
		for _, f := range p.RunTests() {
			t.Errorf("policy.md block %d: %s", i+1, f.Format("policy.md"))
		}
	}
}

// yamlBlocks returns the bodies of the ```yaml fenced blocks of a Markdown text.
func yamlBlocks(md string) []string {
	var out []string
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(md, -1) {
		out = append(out, m[1])
	}
	return out
}

// fencedBlocks returns the fenced blocks of a Markdown text with their info
// strings ("yaml", "yaml broken", "text", ...), in order.
func fencedBlocks(md string) (infos, bodies []string) {
	for _, m := range regexp.MustCompile("(?s)```([^\n`]*)\n(.*?)```").FindAllStringSubmatch(md, -1) {
		infos, bodies = append(infos, m[1]), append(bodies, m[2])
	}
	return infos, bodies
}

// TestPolicyReferenceBuiltinServices: the table of built-in services in
// docs/policy.md is acl.BuiltinServices, in order.
func TestPolicyReferenceBuiltinServices(t *testing.T) {
	doc, err := os.ReadFile("policy.md")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\| ((?:tcp|udp)/[0-9, /a-z-]+) \\|$").FindAllStringSubmatch(string(doc), -1) {
		got = append(got, m[1]+" "+m[2])
	}
	var want []string
	for _, s := range acl.BuiltinServices() {
		ports := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ports[i] = p.String()
		}
		want = append(want, s.Name+" "+strings.Join(ports, ", "))
	}
	if !slices.Equal(got, want) {
		t.Errorf("built-in services in policy.md:\n%s\nin the code:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPolicyReferenceSelectorTable: each row of the "node tags | segments"
// table holds for the last yaml block before it.
func TestPolicyReferenceSelectorTable(t *testing.T) {
	b, err := os.ReadFile("policy.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	at := strings.Index(doc, "| node tags | segments |")
	if at < 0 {
		t.Fatal("policy.md has no node tags | segments table")
	}
	blocks := yamlBlocks(doc[:at])
	p, err := acl.Parse("policy.md", []byte(blocks[len(blocks)-1]))
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `(\\{.*\\})` \\| (.*) \\|$").FindAllStringSubmatch(doc[at:], -1)
	if len(rows) < 5 {
		t.Fatalf("only %d rows in the selector table", len(rows))
	}
	for _, r := range rows {
		var tags map[string]string
		if err := yaml.Unmarshal([]byte(r[1]), &tags); err != nil {
			t.Errorf("row %s: %v", r[1], err)
			continue
		}
		want := r[2]
		got := strings.Join(p.SegmentsOf(tags), ", ")
		if got == "" {
			got = "(none)"
		}
		if got != want {
			t.Errorf("tags %s: segments %s, policy.md says %s", r[1], got, want)
		}
	}
}

// TestPolicyReferenceBrokenExamples: every ```yaml broken block gives
// exactly the errors of the ```text block after it (as file policy.yaml).
func TestPolicyReferenceBrokenExamples(t *testing.T) {
	doc, err := os.ReadFile("policy.md")
	if err != nil {
		t.Fatal(err)
	}
	infos, bodies := fencedBlocks(string(doc))
	n := 0
	for i, info := range infos {
		if info != "yaml broken" {
			continue
		}
		n++
		if i+1 >= len(infos) || infos[i+1] != "text" {
			t.Errorf("broken example %d is not followed by a text block of its errors", n)
			continue
		}
		_, err := acl.Parse("policy.yaml", []byte(bodies[i]))
		if err == nil {
			t.Errorf("broken example %d parses", n)
			continue
		}
		if got, want := err.Error(), strings.TrimSpace(bodies[i+1]); got != want {
			t.Errorf("broken example %d gives:\n%s\npolicy.md says:\n%s", n, got, want)
		}
	}
	if n == 0 {
		t.Error("policy.md has no broken example")
	}
}

// TestPolicyReferenceExplain: the policy explain output shown in
// docs/policy.md is what explain prints for the selectors example with
// api-1 {role: app, svc: api} and db-2 {role: db, env: dev}.
func TestPolicyReferenceExplain(t *testing.T) {
	b, err := os.ReadFile("policy.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	infos, bodies := fencedBlocks(doc)
	var shown string
	for i, info := range infos {
		if info == "text" && strings.HasPrefix(bodies[i], "DENY: api-1 -> db-2") {
			shown = bodies[i]
		}
	}
	if shown == "" {
		t.Fatal("policy.md shows no explain output for api-1 -> db-2")
	}
	at := strings.Index(doc, "| node tags | segments |")
	blocks := yamlBlocks(doc[:at])
	p, err := acl.Parse("policy.md", []byte(blocks[len(blocks)-1]))
	if err != nil {
		t.Fatal(err)
	}
	api1 := acl.Member{Name: "api-1", Tags: map[string]string{"role": "app", "svc": "api"}}
	db2 := acl.Member{Name: "db-2", Tags: map[string]string{"role": "db", "env": "dev"}}
	e, err := node.Explanation(p, 3, api1, db2, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	api.FormatExplanation(&out, e)
	if out.String() != shown {
		t.Errorf("explain prints:\n%s\npolicy.md shows:\n%s", out.String(), shown)
	}
}

// TestPolicyReferenceWorkloadTable: each row of the "identity | tags |
// segments" table of docs/policy.md holds for the last yaml block before
// it (a workload's identity being its node's tags and its own).
func TestPolicyReferenceWorkloadTable(t *testing.T) {
	b, err := os.ReadFile("policy.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	at := strings.Index(doc, "| identity | tags | segments |")
	if at < 0 {
		t.Fatal("policy.md has no identity | tags | segments table")
	}
	blocks := yamlBlocks(doc[:at])
	p, err := acl.Parse("policy.md", []byte(blocks[len(blocks)-1]))
	if err != nil {
		t.Fatal(err)
	}
	table, _, _ := strings.Cut(doc[at:], "\n\n")
	rows := regexp.MustCompile("(?m)^\\| `[^`]+`[^|]* \\| `(\\{.*\\})` \\| (.*) \\|$").FindAllStringSubmatch(table, -1)
	if len(rows) < 3 {
		t.Fatalf("only %d rows in the workload identity table", len(rows))
	}
	for _, r := range rows {
		var tags map[string]string
		if err := yaml.Unmarshal([]byte(r[1]), &tags); err != nil {
			t.Errorf("row %s: %v", r[1], err)
			continue
		}
		if got := strings.Join(p.SegmentsOf(tags), ", "); got != r[2] {
			t.Errorf("tags %s: segments %s, policy.md says %s", r[1], got, r[2])
		}
	}
}
