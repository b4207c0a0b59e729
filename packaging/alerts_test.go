package packaging_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestAlertRules checks packaging/alerts.yaml with promtool: the rules parse
// (check rules) and fire exactly as alerts_test.yaml expects (test rules).
func TestAlertRules(t *testing.T) {
	promtool := needTool(t, "promtool")
	dir := filepath.Join(repoRoot(t), "packaging")
	out := run(t, dir, nil, promtool, "check", "rules", "alerts.yaml")
	if !strings.Contains(out, "SUCCESS: 8 rules found") {
		t.Errorf("promtool check rules:\n%s", out)
	}
	run(t, dir, nil, promtool, "test", "rules", "alerts_test.yaml")
}

// TestAlertMetricsExist fails when an alert names a metric that the metrics
// package does not export (a rename would silently disable the alert).
func TestAlertMetricsExist(t *testing.T) {
	root := repoRoot(t)
	rules, err := os.ReadFile(filepath.Join(root, "packaging", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, "metrics", "*.go"))
	var src strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	names := regexp.MustCompile(`segmesh_[a-z_]+`).FindAllString(string(rules), -1)
	if len(names) < 5 {
		t.Fatalf("only %d metric references in alerts.yaml", len(names))
	}
	for _, n := range names {
		if !strings.Contains(src.String(), `"`+n+`"`) {
			t.Errorf("alerts.yaml uses %s, which the metrics package does not define", n)
		}
	}
}
