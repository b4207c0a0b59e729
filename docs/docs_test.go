// Tests that keep the operator docs in sync with the code.
package docs_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/config"
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
