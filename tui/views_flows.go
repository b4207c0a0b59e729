package tui

import (
	"sort"
	"strconv"
	"strings"

	"github.com/segmesh/segmesh/api"
)

// flowKey identifies a flow aggregate: one source to one destination
// protocol/port with one verdict, direction and (egress) local workload.
func flowKey(f api.Flow) string {
	return flowDirection(f) + "|" + f.SrcAddr + "|" + f.DstAddr + "|" + f.Proto + "|" + strconv.Itoa(int(f.Port)) + "|" +
		f.Verdict + "|" + f.Workload
}

// flowDirection is the flow's direction; daemons from before egress
// enforcement send none, and saw only inbound flows.
func flowDirection(f api.Flow) string {
	if f.Direction == "" {
		return api.DirectionIn
	}
	return f.Direction
}

// mergeFlows folds flows into the lists: denied and audited ones into
// the Flows view's, allowed ones into the Map view's (the Flows view lists
// only denied and audited flows).
func (m *Model) mergeFlows(fs []api.Flow) {
	var denied, allowed []api.Flow
	for _, f := range fs {
		if f.Verdict == api.VerdictAllowed {
			allowed = append(allowed, f)
		} else {
			denied = append(denied, f)
		}
	}
	if len(denied) > 0 {
		m.flows = mergeList(m.flows, denied, m.maxFlows)
	}
	if len(allowed) > 0 {
		m.allowed = mergeList(m.allowed, allowed, m.maxAllow)
	}
}

// mergeList folds fs into list (a newer LastSeen, or a higher count at the
// same time, replaces an entry), keeps it newest first and caps it at n.
func mergeList(list, fs []api.Flow, n int) []api.Flow {
	idx := make(map[string]int, len(list))
	for i, f := range list {
		idx[flowKey(f)] = i
	}
	for _, f := range fs {
		k := flowKey(f)
		i, ok := idx[k]
		if !ok {
			idx[k] = len(list)
			list = append(list, f)
			continue
		}
		old := list[i]
		if f.LastSeen.After(old.LastSeen) || (f.LastSeen.Equal(old.LastSeen) && f.Count >= old.Count) {
			list[i] = f
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].LastSeen.After(list[j].LastSeen) })
	if len(list) > n {
		list = list[:n]
	}
	return list
}

// flowsBody lists denied and audited flows, newest first: inbound ones
// (denied here, the receiver) by their source peer, outbound ones (a local
// process denied at this node's egress) by their destination peer with
// the local workload ("-": the node's identity) and the sending command.
func (m *Model) flowsBody(w int) body {
	cols := []column{
		{title: "DIR"},
		{title: "PEER", min: 6, max: 24},
		{title: "ADDRESS", drop: 2},
		{title: "SEGMENTS", min: 8, max: 30},
		{title: "PORT", min: 5},
		{title: "WORKLOAD", min: 4, max: 16},
		{title: "COMMAND", min: 4, max: 16},
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
		dir := flowDirection(f)
		peer, addr, workload, command := f.SrcName, f.SrcAddr, "", ""
		if dir == api.DirectionOut {
			peer, addr = f.DstName, f.DstAddr
			workload, command = dash(f.Workload), dash(f.Command)
		}
		if peer == "" {
			peer = names[addr]
		}
		if peer == "" {
			peer = addr
		}
		st, ok := m.st.verdict(f.Verdict)
		r := []cell{
			plain(dir),
			plain(dash(peer)),
			plain(dash(addr)),
			plain(dash(strings.Join(f.SrcSegments, ",")) + "→" + dash(strings.Join(f.DstSegments, ","))),
			plain(flowPort(f)),
			plain(workload),
			plain(command),
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
