package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// applyProfileFuncs are the kernel functions row 7g reports with their
// inclusive share (self and callees) of 7b's samples, in call order: the
// element path of a transaction and, below it, pipapo's insertion, its
// lookup-table growth (a fresh zeroed allocation and a copy per growth step)
// and its overlap check.
var applyProfileFuncs = []struct{ sym, label string }{
	{"nf_tables_newsetelem", "nf_tables_newsetelem (the batch's elements)"},
	{"nft_pipapo_insert", "nft_pipapo_insert (interval set of concatenations)"},
	{"pipapo_resize", "pipapo_resize (lookup-table growth)"},
	{"__kvmalloc_node_noprof", "kvmalloc"},
	{"clear_page_erms", "page zeroing"},
	{"pipapo_get", "pipapo_get (overlap check)"},
	{"nft_setelem_activate", "commit"},
}

// profileApply is row 7g: 7b's benchmark run under `perf record -g`, with
// the inclusive share of the kernel functions that take its time. It needs
// perf (Debian: linux-perf); without it the row says so.
func profileApply(env *Env, prm Params) Row {
	row := Row{ID: "7g", What: "CPU profile of 7b (perf, call graph)", Verdict: Info}
	if _, err := exec.LookPath("perf"); err != nil {
		row.Verdict, row.Note = NotMeasured, "perf is not installed (Debian: linux-perf)."
		return row
	}
	bin, data := filepath.Join(env.Dir, "acl.test"), filepath.Join(env.Dir, "apply.perf")
	build := exec.Command("go", "test", "-c", "-o", bin, "./acl/nft/")
	build.Dir = env.Root
	if out, err := build.CombinedOutput(); err != nil {
		row.Verdict, row.Note = Errored, fmt.Sprintf("go test -c ./acl/nft: %v: %s", err, tailText(string(out), 300))
		return row
	}
	rec := exec.Command("perf", "record", "-q", "-g", "-o", data, "--", bin, "-test.run", "^$",
		"-test.bench", "^BenchmarkApplyFirst10000$/kernel", "-test.benchtime", prm.BenchTime)
	rec.Dir = filepath.Join(env.Root, "acl", "nft")
	if out, err := rec.CombinedOutput(); err != nil {
		row.Verdict, row.Note = Errored, fmt.Sprintf("perf record: %v: %s", err, tailText(string(out), 300))
		return row
	}
	out, err := exec.Command("perf", "report", "-i", data, "--children", "--sort", "sym", "-q", "-g", "none", "--percent-limit", "0.5").Output()
	if err != nil {
		row.Verdict, row.Note = Errored, fmt.Sprintf("perf report: %v", err)
		return row
	}
	incl := perfChildren(string(out))
	var parts []string
	for _, f := range applyProfileFuncs {
		if v, ok := incl[f.sym]; ok {
			parts = append(parts, fmt.Sprintf("%s %.1f%%", f.label, v))
		}
	}
	if len(parts) == 0 {
		row.Verdict, row.Note = Errored, "perf report named none of the expected kernel functions: "+tailText(string(out), 300)
		return row
	}
	row.Measured = fmt.Sprintf("system calls %.1f%% of the samples: ", incl["entry_SYSCALL_64_after_hwframe"]) + strings.Join(parts, ", ")
	row.Note = fmt.Sprintf("perf record -g of `acl.test -test.bench '^BenchmarkApplyFirst10000$/kernel' -test.benchtime %s` (the whole process, its untimed Remove/Install between iterations included); "+
		"share of all samples spent in each function and its callees. With the identity layout the 10,000 peers are 20,000 elements of the source "+
		"verdict maps (hash) and only the identities' few ranges go to pipapo interval sets.", prm.BenchTime)
	return row
}

// perfChildren parses `perf report --children --sort sym -q -g none`: each
// symbol's inclusive percentage (its first line when it repeats).
func perfChildren(out string) map[string]float64 {
	incl := map[string]float64{}
	for _, l := range strings.Split(out, "\n") {
		fs := strings.Fields(l)
		if len(fs) < 4 {
			continue
		}
		c, err1 := strconv.ParseFloat(strings.TrimSuffix(fs[0], "%"), 64)
		if err1 != nil || !strings.HasSuffix(fs[1], "%") {
			continue
		}
		if _, seen := incl[fs[3]]; !seen {
			incl[fs[3]] = c
		}
	}
	return incl
}
