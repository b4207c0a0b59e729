package tui

import (
	"sort"

	"github.com/segmesh/segmesh/api"
)

// segmentsBody lists every segment with its members and their state. The
// segment's name and selector are shown on its first row only; the filter
// matches each row with its segment's name and selector.
func (m *Model) segmentsBody(w int) body {
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
