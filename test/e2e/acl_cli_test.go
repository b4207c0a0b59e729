package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// cliResult is one run of the segmesh CLI.
type cliResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("segmesh %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code,
		strings.TrimSpace(r.stdout), strings.TrimSpace(r.stderr))
}

// segmeshCLI runs the segmesh binary from the host (the control socket is
// a file, reachable from any namespace).
func segmeshCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.Segmesh, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	r := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		r.code = ee.ExitCode()
	default:
		t.Fatalf("segmesh %s: %v (stderr %s)", strings.Join(args, " "), err, stderr.String())
	}
	return r
}

// writePolicy writes content to a new file in n's directory.
func writePolicy(t *testing.T, n *harness.Node, content string) string {
	t.Helper()
	f, err := os.CreateTemp(n.Dir, "apply-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// appliedRE matches `policy apply` output.
var appliedRE = regexp.MustCompile(`policy version (\d+) (sha256:[0-9a-f]{64}) \((enforce|audit)\) active`)

// applied is what `policy apply` reports.
type applied struct {
	version int64
	hash    string
	mode    string
}

// tryApply runs `segmesh policy apply FILE --socket S extra...` on n.
func tryApply(t *testing.T, n *harness.Node, content string, extra ...string) cliResult {
	t.Helper()
	file := writePolicy(t, n, content)
	return segmeshCLI(t, append([]string{"policy", "apply", file, "--socket", n.Socket}, extra...)...)
}

// applyPolicy applies content on n and returns the version it got.
func applyPolicy(t *testing.T, n *harness.Node, content string, extra ...string) applied {
	t.Helper()
	r := tryApply(t, n, content, extra...)
	m := appliedRE.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("policy apply on %s failed: %v", n.Name, r)
	}
	v, _ := strconv.ParseInt(m[1], 10, 64)
	return applied{version: v, hash: m[2], mode: m[3]}
}

// reloadNode runs `segmesh reload` against n.
func reloadNode(t *testing.T, n *harness.Node) {
	t.Helper()
	if r := segmeshCLI(t, "reload", "--socket", n.Socket); r.code != 0 {
		t.Fatalf("reload %s: %v", n.Name, r)
	}
}

// explanation is `policy explain --json`.
type explanation struct {
	Verdict      string   `json:"verdict"`
	From         string   `json:"from"`
	To           string   `json:"to"`
	FromSegments []string `json:"from_segments"`
	ToSegments   []string `json:"to_segments"`
	Port         string   `json:"port"`
	Rules        []string `json:"rules"`
	Mode         string   `json:"mode"`
	Version      int64    `json:"policy_version"`
}

// explain runs `policy explain FROM TO PORT --json` on n (exit 0 on an
// allow, 3 on a deny).
func explain(t *testing.T, n *harness.Node, from, to, port string) explanation {
	t.Helper()
	r := segmeshCLI(t, "policy", "explain", from, to, port, "--json", "--socket", n.Socket)
	if r.code != 0 && r.code != 3 {
		t.Fatalf("%v", r)
	}
	var e explanation
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil {
		t.Fatalf("policy explain --json: %v: %s", err, r.stdout)
	}
	if want := map[string]int{"allow": 0, "deny": 3}[e.Verdict]; r.code != want {
		t.Errorf("policy explain %s %s %s: verdict %s, exit %d, want %d", from, to, port, e.Verdict, r.code, want)
	}
	return e
}

// policyOf returns n's status policy, failing the wait when n is down.
func policyOf(n *harness.Node) (harness.StatusPolicy, error) {
	st, err := n.Status()
	if err != nil {
		return harness.StatusPolicy{}, err
	}
	return st.Policy, nil
}

// hasPolicy is a waitNodes condition: n reports version v with hash h.
func hasPolicy(v int64, h string) func(*harness.Node) error {
	return func(n *harness.Node) error {
		p, err := policyOf(n)
		if err != nil {
			return err
		}
		if p.Version != v || p.Hash != h {
			return fmt.Errorf("policy v%d %s, want v%d %s", p.Version, p.Hash, v, h)
		}
		return nil
	}
}
