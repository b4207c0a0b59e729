package tui

import (
	"sort"
	"strconv"
	"strings"

	"github.com/segmesh/segmesh/api"
)

// flowKey identifies a flow aggregate: one source to one protocol/port of
// this node with one verdict.
func flowKey(f api.Flow) string {
	return f.SrcAddr + "|" + f.DstAddr + "|" + f.Proto + "|" + strconv.Itoa(int(f.Port)) + "|" + f.Verdict
}

// mergeFlows folds flows into the list (a newer LastSeen, or a higher count
// at the same time, replaces an entry), keeps it newest first and caps it.
func (m *Model) mergeFlows(fs []api.Flow) {
	idx := make(map[string]int, len(m.flows))
	for i, f := range m.flows {
		idx[flowKey(f)] = i
	}
	for _, f := range fs {
		k := flowKey(f)
		i, ok := idx[k]
		if !ok {
			idx[k] = len(m.flows)
			m.flows = append(m.flows, f)
			continue
		}
		old := m.flows[i]
		if f.LastSeen.After(old.LastSeen) || (f.LastSeen.Equal(old.LastSeen) && f.Count >= old.Count) {
			m.flows[i] = f
		}
	}
	sort.SliceStable(m.flows, func(i, j int) bool { return m.flows[i].LastSeen.After(m.flows[j].LastSeen) })
	if len(m.flows) > m.maxFlows {
		m.flows = m.flows[:m.maxFlows]
	}
}

// flowsBody lists denied and audited flows, newest first.
func (m *Model) flowsBody(w int) body {
	cols := []column{
		{title: "SOURCE", min: 6, max: 24},
		{title: "ADDRESS", drop: 1},
		{title: "SEGMENTS", min: 8, max: 30},
		{title: "PORT", min: 5},
		{title: "VERDICT"},
		{title: "COUNT", right: true},
		{title: "LAST SEEN", right: true},
	}
	names := map[string]string{}
	if m.status != nil {
		for _, p := range m.status.Peers {
			names[p.Address] = p.Name
			names[p.Address6] = p.Name
		}
	}
	now := m.now()
	var rows [][]cell
	for _, f := range m.flows {
		src := f.SrcName
		if src == "" {
			src = names[f.SrcAddr]
		}
		if src == "" {
			src = f.SrcAddr
		}
		st, ok := m.st.verdict(f.Verdict)
		r := []cell{
			plain(dash(src)),
			plain(dash(f.SrcAddr)),
			plain(dash(strings.Join(f.SrcSegments, ",")) + "→" + dash(strings.Join(f.DstSegments, ","))),
			plain(flowPort(f)),
			styledCell(dash(f.Verdict), st, ok),
			plain(strconv.FormatUint(f.Count, 10)),
			plain(age(now.Sub(f.LastSeen))),
		}
		if matches(m.filters[viewFlows], rowText(r)) {
			rows = append(rows, r)
		}
	}
	title, lines := renderTable(m.st, cols, rows, w)
	return body{title: title, lines: lines, empty: "no denied or audited flows"}
}

// flowPort is proto/port, or the protocol alone for ICMP and port 0.
func flowPort(f api.Flow) string {
	if f.Port == 0 {
		return dash(f.Proto)
	}
	return f.Proto + "/" + strconv.Itoa(int(f.Port))
}
