package tui

import (
	"fmt"
	"sort"
	"strings"

	"github.com/segmesh/segmesh/api"
)

// matrixSegments are the matrix's rows and columns: the policy's segments,
// preceded by "*" when a rule uses it.
func matrixSegments(pv *api.PolicyView) []string {
	star := false
	for _, c := range pv.Matrix {
		star = star || c.From == "*" || c.To == "*"
	}
	segs := append([]string(nil), pv.Segments...)
	if star {
		segs = append([]string{"*"}, segs...)
	}
	return segs
}

// policyBody renders the segment × segment matrix of allowed ports (rows:
// from, columns: to; columns scroll sideways when they do not fit), then the
// allowed pairs in full with the rules behind them.
func (m *Model) policyBody(w int) body {
	pv := m.matrix
	if pv == nil {
		return body{empty: "loading policy…"}
	}
	if pv.Version == 0 {
		return body{empty: "no policy: all inbound mesh traffic is denied (fail closed)"}
	}
	segs := matrixSegments(pv)
	cells := map[[2]string]api.MatrixCell{}
	for _, c := range pv.Matrix {
		cells[[2]string{c.From, c.To}] = c
	}
	off := max(0, min(m.colOffset, len(segs)-1))
	to := segs[off:]
	cols := []column{{title: "FROM \\ TO", min: 8, max: 16}}
	for i, t := range to {
		cols = append(cols, column{title: t, min: 8, max: 24, drop: i + 1})
	}
	filter := m.filters[viewPolicy]
	var rows [][]cell
	for _, from := range segs {
		r := []cell{styledCell(from, m.st.header, true)}
		for _, t := range to {
			c, ok := cells[[2]string{from, t}]
			if !ok || len(c.Ports) == 0 {
				r = append(r, m.dimCell("·"))
				continue
			}
			r = append(r, plain(strings.Join(c.Ports, ",")))
		}
		if matches(filter, rowText(r)) {
			rows = append(rows, r)
		}
	}
	title, lines, hidden := renderTableW(m.st, cols, rows, w)
	if off > 0 || hidden > 0 {
		shown := len(to) - hidden
		lines = append(lines, m.st.dim.Render(fmt.Sprintf("columns %d-%d of %d (←/→ scroll)", off+1, off+shown, len(segs))))
	}
	if list := m.allowedList(pv, segs, w, filter); len(list) > 0 {
		lines = append(append(lines, ""), list...)
	}
	return body{title: title, lines: lines, empty: "no segments"}
}

// allowedList is every non-empty cell in full: from → to, ports, rules.
func (m *Model) allowedList(pv *api.PolicyView, segs []string, w int, filter string) []string {
	order := make(map[string]int, len(segs))
	for i, s := range segs {
		order[s] = i
	}
	cs := append([]api.MatrixCell(nil), pv.Matrix...)
	sortCells(cs, order)
	cols := []column{
		{title: "ALLOWED", min: 8, max: 40},
		{title: "PORTS", min: 10},
		{title: "RULES", min: 8, drop: 1},
	}
	var rows [][]cell
	for _, c := range cs {
		if len(c.Ports) == 0 {
			continue
		}
		r := []cell{plain(c.From + " → " + c.To), plain(strings.Join(c.Ports, ",")), plain(strings.Join(c.Rules, ","))}
		if matches(filter, rowText(r)) {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	title, lines := renderTable(m.st, cols, rows, w)
	return append([]string{title}, lines...)
}

func sortCells(cs []api.MatrixCell, order map[string]int) {
	rank := func(s string) int {
		if r, ok := order[s]; ok {
			return r
		}
		return len(order)
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if a, b := rank(cs[i].From), rank(cs[j].From); a != b {
			return a < b
		}
		return rank(cs[i].To) < rank(cs[j].To)
	})
}
