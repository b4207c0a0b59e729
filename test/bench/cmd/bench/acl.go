package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var benchLineRE = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op`)

// benchACL runs the acl package's Go benchmarks (compile, first kernel
// apply, one join) and compares ns/op with the targets.
func benchACL(env *Env, prm Params) []Row {
	cmd := exec.Command("go", "test", "-count=1", "-run", "^$", "-bench", "^(BenchmarkCompile|BenchmarkApplyFirst10000|BenchmarkApplyOneJoin)$", "-benchtime", prm.BenchTime, "./acl/")
	cmd.Dir = env.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return errRow("7", "control-plane cost", fmt.Errorf("go test -bench ./acl: %w: %s", err, out))
	}
	ns := map[string]float64{}
	for _, l := range strings.Split(string(out), "\n") {
		if m := benchLineRE.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			ns[m[1]] = v
		}
	}
	targets := []struct {
		id, what, bench string
		target          time.Duration
	}{
		{"7a", "compile 1,000 peers × 100 rules", "BenchmarkCompile/peers=1000/rules=100", 20 * time.Millisecond},
		{"7b", "first kernel apply, 10,000 peers × 20 rules", "BenchmarkApplyFirst10000/kernel", 200 * time.Millisecond},
		{"7c", "one peer joining among 10,000 (one batch, kernel)", "BenchmarkApplyOneJoin/kernel", 5 * time.Millisecond},
	}
	var rows []Row
	for _, t := range targets {
		v, ok := ns[t.bench]
		if !ok {
			rows = append(rows, Row{ID: t.id, What: t.what, Measured: "—", Target: "≤ " + t.target.String(), Verdict: Errored, Note: "benchmark " + t.bench + " not in the output: " + tailText(string(out), 400)})
			continue
		}
		d := time.Duration(v)
		rows = append(rows, Row{
			ID: t.id, What: t.what, Measured: fmt.Sprintf("%.2f ms", v/1e6), Target: "≤ " + t.target.String(),
			Ratio: fmt.Sprintf("%.2f of target", v/float64(t.target)), Verdict: verdict(d <= t.target),
			Note: fmt.Sprintf("`go test -run '^$' -bench %s -benchtime %s ./acl/`, ns/op.", t.bench, prm.BenchTime),
		})
	}
	if v, ok := ns["BenchmarkCompile/peers=10000/rules=20"]; ok {
		rows = append(rows, Row{ID: "7d", What: "compile 10,000 peers × 20 rules (reference)", Measured: fmt.Sprintf("%.2f ms", v/1e6), Verdict: Info})
	}
	return rows
}

func tailText(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
