package tui

import (
	"sort"
	"strings"

	"github.com/segmesh/segmesh/api"
)

// segmentsBody is view 1: this node's workloads (when it has any), then
// every segment with its members and their state.
func (m *Model) segmentsBody(w int) body {
	segs := m.segmentTable(w)
	wl := m.workloadTable(w)
	if len(wl.lines) == 0 {
		return segs
	}
	lines := wl.lines
	switch {
	case len(segs.lines) > 0:
		lines = append(append(lines, "", segs.title), segs.lines...)
	case m.filters[viewSegments] == "":
		lines = append(lines, "", segs.title, m.st.dim.Render(segs.empty))
	}
	return body{title: wl.title, lines: lines}
}

// workloadTable lists this node's workloads with their state, segments,
// cgroup and reason (a column only when one has a reason); no lines when
// there are none or none matches the filter.
func (m *Model) workloadTable(w int) body {
	if m.status == nil {
		return body{}
	}
	cols := []column{
		{title: "WORKLOAD", min: 6, max: 32},
		{title: "STATE"},
		{title: "SEGMENTS", min: 6, max: 30},
		{title: "CGROUP", min: 10, cutLeft: true},
		{title: "REASON", min: 10, max: 60, drop: 1},
	}
	hasReason := false
	var rows [][]cell
	for _, wl := range m.status.Self.Workloads {
		st, ok := m.st.workload(wl.State)
		r := []cell{
			plain(wl.Name),
			styledCell(dash(wl.State), st, ok),
			plain(dash(strings.Join(wl.Segments, ","))),
			plain(dash(wl.Cgroup)),
			plain(wl.Reason),
		}
		if !matches(m.filters[viewSegments], rowText(r)) {
			continue
		}
		hasReason = hasReason || wl.Reason != ""
		rows = append(rows, r)
	}
	if !hasReason {
		cols = cols[:len(cols)-1]
	}
	title, lines := renderTable(m.st, cols, rows, w)
	return body{title: title, lines: lines}
}

// segmentTable lists every segment with its members and their state. The
// segment's name and selector are shown on its first row only; the filter
// matches each row with its segment's name and selector.
func (m *Model) segmentTable(w int) body {
	cols := []column{
		{title: "SEGMENT", min: 6, max: 20},
		{title: "SELECTOR", min: 8, max: 30, drop: 1},
		{title: "MEMBER", min: 6, max: 24},
		{title: "ADDRESS"},
		{title: "STATE"},
	}
	states := map[string]string{}
	if m.status != nil {
		for _, p := range m.status.Peers {
			states[p.PublicKey] = p.State
		}
	}
	filter := m.filters[viewSegments]
	var rows [][]cell
	for _, sg := range m.segments {
		sel := api.FormatTags(sg.Selector)
		members := append([]api.SegmentMember(nil), sg.Members...)
		sort.SliceStable(members, func(i, j int) bool { return members[i].Name < members[j].Name })
		first := true
		add := func(r []cell) {
			if !matches(filter, sg.Name+" "+sel+" "+rowText(r[2:])) {
				return
			}
			if first {
				r[0], r[1] = plain(sg.Name), plain(sel)
				first = false
			}
			rows = append(rows, r)
		}
		if len(members) == 0 {
			add([]cell{{}, {}, m.dimCell("(no members)"), {}, {}})
			continue
		}
		for _, mb := range members {
			state := mb.State
			if s, ok := states[mb.PublicKey]; ok && !mb.Self {
				state = s
			}
			name := dash(mb.Name)
			nameCell := plain(name)
			if mb.Self {
				nameCell = styledCell(name+" (self)", m.st.self, true)
			}
			st, ok := m.st.state(state)
			add([]cell{{}, {}, nameCell, plain(dash(mb.Address)), styledCell(dash(state), st, ok)})
		}
	}
	title, lines := renderTable(m.st, cols, rows, w)
	empty := "no segments (no policy)"
	if m.segments == nil {
		empty = "loading segments…"
	}
	return body{title: title, lines: lines, empty: empty}
}

func (m *Model) dimCell(s string) cell { return styledCell(s, m.st.dim, true) }
