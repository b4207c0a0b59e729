package tui

import (
	"strings"

	"github.com/charmbracelet/lipgloss"
)

// column describes one table column.
type column struct {
	title string
	min   int  // the column may shrink to this width (0: never shrinks)
	max   int  // cap on the natural width (0: none)
	right bool // right-aligned (numbers)
	drop  int  // >0: hidden when the table does not fit, highest first
	// cutLeft: a value too wide loses its start, not its end (paths,
	// whose end names the thing).
	cutLeft bool
}

// cell is one value; styled cells are rendered with st after layout.
type cell struct {
	text   string
	st     lipgloss.Style
	styled bool
}

func plain(s string) cell { return cell{text: s} }

func styledCell(s string, st lipgloss.Style, ok bool) cell {
	return cell{text: s, st: st, styled: ok}
}

// rowText is the text a filter matches against.
func rowText(r []cell) string {
	parts := make([]string, len(r))
	for i, c := range r {
		parts[i] = c.text
	}
	return strings.Join(parts, " ")
}

// filterRows keeps the rows whose text matches filter.
func filterRows(rows [][]cell, filter string) [][]cell {
	if filter == "" {
		return rows
	}
	var out [][]cell
	for _, r := range rows {
		if matches(filter, rowText(r)) {
			out = append(out, r)
		}
	}
	return out
}

// layout picks column widths (0 = hidden) that fit maxw: natural widths
// with two spaces between columns if they fit, else one space, hiding the
// droppable columns one at a time (highest drop first), and only then
// shrinking the shrinkable columns. It returns the widths and the gap.
func layout(cols []column, rows [][]cell, maxw int) ([]int, int) {
	natural := make([]int, len(cols))
	for i, c := range cols {
		w := width(c.title)
		for _, r := range rows {
			if i < len(r) {
				w = max(w, width(r[i].text))
			}
		}
		if c.max > 0 {
			w = min(w, max(c.max, width(c.title)))
		}
		natural[i] = w
	}
	hidden := make([]bool, len(cols))
	if total(natural, hidden, 2) <= maxw {
		return natural, 2
	}
	for total(natural, hidden, 1) > maxw {
		victim := -1
		for i, c := range cols {
			if !hidden[i] && c.drop > 0 && (victim < 0 || c.drop >= cols[victim].drop) {
				victim = i
			}
		}
		if victim < 0 {
			break
		}
		hidden[victim] = true
	}
	w := append([]int(nil), natural...)
	for i := range w {
		if hidden[i] {
			w[i] = 0
		}
	}
	for sum := total(w, hidden, 1); sum > maxw; sum-- {
		best := -1
		for i, c := range cols {
			if !hidden[i] && c.min > 0 && w[i] > c.min && (best < 0 || w[i]-c.min > w[best]-cols[best].min) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		w[best]--
	}
	return w, 1
}

func total(w []int, hidden []bool, gap int) int {
	sum, n := 0, 0
	for i, x := range w {
		if !hidden[i] {
			sum += x
			n++
		}
	}
	if n > 1 {
		sum += gap * (n - 1)
	}
	return sum
}

// renderTable lays out and renders the column titles and the rows.
func renderTable(st styles, cols []column, rows [][]cell, maxw int) (string, []string) {
	title, lines, _ := renderTableW(st, cols, rows, maxw)
	return title, lines
}

// renderTableW is renderTable that also returns how many columns it hid.
func renderTableW(st styles, cols []column, rows [][]cell, maxw int) (string, []string, int) {
	w, gap := layout(cols, rows, maxw)
	hidden := 0
	for _, x := range w {
		if x == 0 {
			hidden++
		}
	}
	sep := strings.Repeat(" ", gap)
	titles := make([]string, 0, len(cols))
	for i, c := range cols {
		if w[i] > 0 {
			titles = append(titles, pad(truncate(c.title, w[i]), w[i], c.right))
		}
	}
	title := st.title.Render(strings.TrimRight(strings.Join(titles, sep), " "))
	lines := make([]string, 0, len(rows))
	for _, r := range rows {
		parts := make([]string, 0, len(cols))
		for i, c := range cols {
			if w[i] == 0 {
				continue
			}
			var cl cell
			if i < len(r) {
				cl = r[i]
			}
			t := truncate(cl.text, w[i])
			if c.cutLeft {
				t = truncateLeft(cl.text, w[i])
			}
			n := width(t)
			if cl.styled && t != "" {
				t = cl.st.Render(t)
			}
			parts = append(parts, pad2(t, n, w[i], c.right))
		}
		lines = append(lines, strings.TrimRight(strings.Join(parts, sep), " "))
	}
	return title, lines, hidden
}

// pad2 pads an already styled string whose visible width is n.
func pad2(s string, n, w int, right bool) string {
	if n >= w {
		return s
	}
	if right {
		return strings.Repeat(" ", w-n) + s
	}
	return s + strings.Repeat(" ", w-n)
}
