package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/x/ansi"
)

// mapLayout fits n columns of natural width nat next to row labels of lw
// cells in w: the column width, the gap between columns and how many are
// shown.
func mapLayout(lw, nat, n, w int) (cw, gap, shown int) {
	if n == 0 {
		return nat, 2, 0
	}
	for _, gap := range []int{2, 1} {
		if lw+n*(nat+gap) <= w {
			return nat, gap, n
		}
	}
	floor := min(nat, mapAbbrev)
	if cw := (w-lw)/n - 1; cw >= floor {
		return cw, 1, n
	}
	return floor, 1, min(n, max(0, (w-lw)/(floor+1)))
}

// pickSegments keeps k of names, those with traffic first, in their order.
func pickSegments(names []string, busy map[string]bool, k int) []string {
	if k >= len(names) {
		return names
	}
	keep := make([]bool, len(names))
	n := 0
	for pass := range 2 {
		for i, s := range names {
			if n < k && !keep[i] && (pass == 1 || busy[s]) {
				keep[i] = true
				n++
			}
		}
	}
	var out []string
	for i, s := range names {
		if keep[i] {
			out = append(out, s)
		}
	}
	return out
}

// leftOutNote says how many segments did not fit, as columns and as rows.
func leftOutNote(cols, rows int) string {
	var parts []string
	if cols > 0 {
		parts = append(parts, fmt.Sprintf("+%d more segments as columns", cols))
	}
	if rows > 0 {
		if cols > 0 {
			parts = append(parts, fmt.Sprintf("+%d as rows", rows))
		} else {
			parts = append(parts, fmt.Sprintf("+%d more segments as rows", rows))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, ", ") + ": widen the terminal"
}

// abbreviate cuts names to w cells, keeping their start ("monit…"); when
// that makes two of them equal ("segment-01", "segment-02"), it keeps their
// start and end instead ("seg…01").
func abbreviate(names []string, w int) []string {
	out := make([]string, len(names))
	seen := map[string]bool{}
	unique := true
	for i, n := range names {
		out[i] = truncate(n, w)
		unique = unique && !seen[out[i]]
		seen[out[i]] = true
	}
	if unique || w < 4 {
		return out
	}
	for i, n := range names {
		if width(n) > w {
			tail := (w - 1) / 2
			out[i] = ansi.Truncate(n, w-1-tail, "") + "…" + ansi.TruncateLeft(n, width(n)-tail, "")
		}
	}
	return out
}

// compactCount renders n in at most four cells: 999, 1.2k, 45k, 3M, 1.5G.
func compactCount(n uint64) string {
	if n < 1000 {
		return fmt.Sprint(n)
	}
	units := []string{"k", "M", "G", "T", "P", "E"}
	u := 0
	for n >= 1000*1000 && u < len(units)-1 {
		n /= 1000
		u++
	}
	// n is now in [1000, 1e6): n/1000 units of units[u].
	if whole := n / 1000; whole >= 10 {
		return fmt.Sprintf("%d%s", whole, units[u])
	}
	whole, tenth := n/1000, n%1000/100
	if tenth == 0 {
		return fmt.Sprintf("%d%s", whole, units[u])
	}
	return fmt.Sprintf("%d.%d%s", whole, tenth, units[u])
}
