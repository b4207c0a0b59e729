package tui

import (
	"sort"
	"strings"

	"github.com/segmesh/segmesh/api"
)

// unknownSegment is the row (or column) of flows whose source (or
// destination) is in no segment, as in `segmesh map`.
const unknownSegment = "unknown"

// mapCorner is the title of the row labels.
const mapCorner = "FROM \\ TO"

// Column widths of the Map view: a column is as wide as its longest name
// within [mapMinCell, mapMaxCol]; when not all fit, names are cut to
// mapAbbrev cells (or the width that fits them all, if more) and the
// columns that still do not fit are left out.
const (
	mapMinCell  = 4 // "1.2k", "999k"
	mapMaxCol   = 12
	mapAbbrev   = 6
	mapMaxRow   = 14 // row labels
	mapTightRow = 10 // row labels when columns do not fit
)

// mapCell is the observed traffic of one segment pair: connections of all
// verdicts and the worst verdict (verdictRank).
type mapCell struct {
	conns uint64
	worst int
}

// observedMap is the segment × segment matrix of the flows in memory.
type observedMap struct {
	cells      map[[2]string]*mapCell
	rows, cols []string        // candidates, in order
	from, to   map[string]bool // segments with traffic out of / into them
}

// verdictRank orders verdicts from best to worst; an unknown one counts as
// denied.
func verdictRank(v string) int {
	switch v {
	case api.VerdictAllowed:
		return 1
	case api.VerdictAudited:
		return 2
	}
	return 3
}

var rankedVerdicts = [...]string{api.VerdictAllowed, api.VerdictAudited, api.VerdictDenied}

// flowEnds are a flow's source and destination segments (unknownSegment
// for none): in, the peer's to this node's; out, this node's to the
// peer's. Daemons from before the peer fields name the peer's segments in
// SrcSegments (in) or DstSegments (out) only.
func flowEnds(f api.Flow) (from, to []string) {
	peer := f.PeerSegments
	if flowDirection(f) == api.DirectionOut {
		if len(peer) == 0 {
			peer = f.DstSegments
		}
		from, to = f.SrcSegments, peer
	} else {
		if len(peer) == 0 {
			peer = f.SrcSegments
		}
		from, to = peer, f.DstSegments
	}
	if len(from) == 0 {
		from = []string{unknownSegment}
	}
	if len(to) == 0 {
		to = []string{unknownSegment}
	}
	return from, to
}

// flowConns is a flow's connection count; daemons from before the
// contract's counts have only Count (the logged attempts).
func flowConns(f api.Flow) uint64 {
	if f.Connections > 0 {
		return f.Connections
	}
	return f.Count
}

// buildMap aggregates the flows in memory: a flow between nodes in several
// segments counts in every pair. Rows and columns are the policy's
// segments, then segments seen only in flows, then unknownSegment when
// some flow has no segment on that side.
func (m *Model) buildMap() observedMap {
	om := observedMap{cells: map[[2]string]*mapCell{}, from: map[string]bool{}, to: map[string]bool{}}
	for _, list := range [][]api.Flow{m.flows, m.allowed} {
		for _, f := range list {
			from, to := flowEnds(f)
			for _, a := range from {
				for _, b := range to {
					c := om.cells[[2]string{a, b}]
					if c == nil {
						c = &mapCell{}
						om.cells[[2]string{a, b}] = c
					}
					c.conns += flowConns(f)
					c.worst = max(c.worst, verdictRank(f.Verdict))
					om.from[a], om.to[b] = true, true
				}
			}
		}
	}
	known := map[string]bool{unknownSegment: true}
	var segs []string
	for _, s := range m.segments {
		if !known[s.Name] {
			known[s.Name] = true
			segs = append(segs, s.Name)
		}
	}
	var extra []string
	for _, seen := range []map[string]bool{om.from, om.to} {
		for s := range seen {
			if !known[s] {
				known[s] = true
				extra = append(extra, s)
			}
		}
	}
	sort.Strings(extra)
	segs = append(segs, extra...)
	om.rows = append([]string(nil), segs...)
	om.cols = append([]string(nil), segs...)
	if om.from[unknownSegment] {
		om.rows = append(om.rows, unknownSegment)
	}
	if om.to[unknownSegment] {
		om.cols = append(om.cols, unknownSegment)
	}
	return om
}

// mapBody renders the segment × segment matrix of observed flows (rows:
// source segments, columns: destination segments; the filter keeps rows)
// in w cells and avail lines: each cell the connections of every verdict,
// coloured by the worst, then a legend. Segments that do not fit are left
// out, those without traffic first, and counted.
func (m *Model) mapBody(w, avail int) body {
	om := m.buildMap()
	if len(om.rows) == 0 && len(om.cols) == 0 {
		if m.segments == nil {
			return body{empty: "loading segments…"}
		}
		return body{empty: "no segments and no observed flows"}
	}
	var rows []string
	for _, r := range om.rows {
		if matches(m.filters[viewMap], r) {
			rows = append(rows, r)
		}
	}
	lw := width(mapCorner)
	for _, r := range om.rows {
		lw = max(lw, width(r))
	}
	lw = min(lw, mapMaxRow)
	nat := mapMinCell
	for _, c := range om.cols {
		nat = max(nat, width(c))
	}
	nat = min(nat, mapMaxCol)
	cw, gap, shown := mapLayout(lw, nat, len(om.cols), w)
	if shown < len(om.cols) || cw < nat {
		lw = min(lw, mapTightRow)
		cw, gap, shown = mapLayout(lw, nat, len(om.cols), w)
	}
	colsLeft := len(om.cols) - shown
	room := avail - 2 // a blank line and the legend
	if colsLeft > 0 || len(rows) > room {
		room-- // the note
	}
	rowsShown := min(len(rows), max(0, room))
	rowsLeft := len(rows) - rowsShown
	cols := pickSegments(om.cols, om.to, shown)
	rows = pickSegments(rows, om.from, rowsShown)

	sep := strings.Repeat(" ", gap)
	var t strings.Builder
	t.WriteString(pad(truncate(mapCorner, lw), lw, false))
	for _, c := range abbreviate(cols, cw) {
		t.WriteString(sep + pad(c, cw, true))
	}
	title := m.st.title.Render(t.String())
	var lines []string
	for _, r := range rows {
		var b strings.Builder
		b.WriteString(m.st.header.Render(pad(truncate(r, lw), lw, false)))
		for _, c := range cols {
			b.WriteString(sep)
			mc := om.cells[[2]string{r, c}]
			if mc == nil {
				b.WriteString(strings.Repeat(" ", cw-1) + m.st.dim.Render("·"))
				continue
			}
			s := compactCount(mc.conns)
			b.WriteString(strings.Repeat(" ", max(0, cw-width(s))) + m.st.cellVerdict(rankedVerdicts[mc.worst-1]).Render(s))
		}
		lines = append(lines, b.String())
	}
	if len(lines) == 0 {
		return body{title: title}
	}
	lines = append(lines, "", m.mapLegend())
	if note := leftOutNote(colsLeft, rowsLeft); note != "" {
		lines = append(lines, m.st.dim.Render(note))
	}
	return body{title: title, lines: lines}
}

// mapLegend names the colours and what a cell counts.
func (m *Model) mapLegend() string {
	return m.st.bad.Render("denied") + "  " + m.st.warn.Render("audited") + "  " +
		m.st.live.Render("allowed") + "  " + m.st.dim.Render("· none  connections row → column, worst verdict")
}
