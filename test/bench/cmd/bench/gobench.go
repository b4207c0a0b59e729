package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// GoBench is one result line of `go test -bench -benchmem`.
type GoBench struct {
	Pkg        string
	Name       string // without the -GOMAXPROCS suffix
	Iterations int
	NsOp       float64
	BytesOp    float64
	AllocsOp   float64
	Extra      []string // custom metrics, "value unit"
}

// goBenchSuites are the pure Go benchmarks of the report (no root, no
// kernel): the policy compiler, the nft diff of one join among 10,000 peers
// (Go side only) and the node record codec.
var goBenchSuites = []struct{ pkg, re string }{
	{"./acl/", "^BenchmarkCompile$"},
	{"./acl/nft/", "^BenchmarkDiffOneJoin$"},
	{"./gossip/", "^(BenchmarkRecordEncode|BenchmarkRecordDecode)$"},
}

var goBenchLineRE = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// parseGoBench reads the result lines of `go test -bench` output.
func parseGoBench(pkg, out string) []GoBench {
	var res []GoBench
	for _, l := range strings.Split(out, "\n") {
		m := goBenchLineRE.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		b := GoBench{Pkg: pkg, Name: m[1]}
		b.Iterations, _ = strconv.Atoi(m[2])
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				b.NsOp = v
			case "B/op":
				b.BytesOp = v
			case "allocs/op":
				b.AllocsOp = v
			default:
				b.Extra = append(b.Extra, f[i]+" "+f[i+1])
			}
		}
		res = append(res, b)
	}
	return res
}

// runGoBenches runs every suite with -benchmem for benchtime each and
// returns the results and one error text per failed suite.
func runGoBenches(env *Env, benchtime string) ([]GoBench, []string) {
	var res []GoBench
	var errs []string
	for _, s := range goBenchSuites {
		t0 := time.Now()
		cmd := exec.Command("go", "test", "-count=1", "-run", "^$", "-bench", s.re, "-benchmem", "-benchtime", benchtime, s.pkg)
		cmd.Dir = env.Root
		out, err := cmd.CombinedOutput()
		got := parseGoBench(strings.Trim(s.pkg, "./"), string(out))
		logf("go benchmarks %s: %d results in %s", s.pkg, len(got), time.Since(t0).Round(time.Second))
		if err != nil || len(got) == 0 {
			errs = append(errs, fmt.Sprintf("`go test -bench '%s' %s`: %v: %s", s.re, s.pkg, err, tailText(string(out), 400)))
		}
		res = append(res, got...)
	}
	return res, errs
}

// goBenchMarkdown renders the Go benchmarks section.
func goBenchMarkdown(benches []GoBench, errs []string, benchtime string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Go benchmarks\n\n")
	fmt.Fprintf(&b, "`go test -run '^$' -bench ... -benchmem -benchtime %s` in the same run (no root, no kernel). "+
		"The compiler is the acl package's, the nft diff acl/nft's (BenchmarkDiffOneJoin: the Go side of one peer joining "+
		"among 10,000 into an existing identity — validated and diffed against a fake kernel, no root); the record codec is gossip's "+
		"(plain: open-mode record with 3 tags; cert: CA-mode record carrying the compact certificate; "+
		"extended: tags too large for memberlist's 512-byte node meta, announced as a stub plus a separate full record; "+
		"encode = splitRecord, decode = what a receiver runs on the meta, and on the full record for a stub).\n\n", benchtime)
	if len(benches) > 0 {
		fmt.Fprintf(&b, "| package | benchmark | iterations | ns/op | B/op | allocs/op | other |\n|---|---|---|---|---|---|---|\n")
		for _, r := range benches {
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %.0f | %.0f | %s |\n", r.Pkg, mdEscape(r.Name), r.Iterations,
				fmtNs(r.NsOp), r.BytesOp, r.AllocsOp, dash(strings.Join(r.Extra, ", ")))
		}
		b.WriteString("\n")
	}
	for _, e := range errs {
		fmt.Fprintf(&b, "- **error** %s\n", mdEscape(e))
	}
	return b.String()
}

// fmtNs prints ns/op with a readable unit next to it.
func fmtNs(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.0f (%.2f ms)", ns, ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.0f (%.1f µs)", ns, ns/1e3)
	}
	return fmt.Sprintf("%.0f", ns)
}
