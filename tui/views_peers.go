package tui

import (
	"fmt"
	"sort"
	"strings"

	"github.com/segmesh/segmesh/api"
)

// peersBody lists the other nodes with their addresses, segments, endpoint,
// handshake age, receive/transmit rates and state, sorted by name; a peer
// with workloads has a line below it naming them with their states
// ("└ workloads api✓ cron? old✗", api.WorkloadMarks). Columns the width
// leaves out (ADDRESS6, then REASON) are counted on a last line, "(+2
// columns: widen the terminal)".
func (m *Model) peersBody(w int) body {
	cols := []column{
		{title: "NAME", min: 6, max: 24},
		{title: "ADDRESS"},
		{title: "ADDRESS6", drop: 3},
		{title: "SEGMENTS", min: 6, max: 30},
		{title: "ENDPOINT", min: 12},
		{title: "LAST HS"},
		{title: "RX/s", right: true},
		{title: "TX/s", right: true},
		{title: "STATE"},
		{title: "REASON", min: 10, max: 40, drop: 2},
	}
	if m.status == nil {
		title, _ := renderTable(m.st, cols, nil, w)
		return body{title: title, empty: "waiting for status…"}
	}
	peers := append([]api.Peer(nil), m.status.Peers...)
	sort.SliceStable(peers, func(i, j int) bool {
		if peers[i].Name != peers[j].Name {
			return peers[i].Name < peers[j].Name
		}
		return peers[i].PublicKey < peers[j].PublicKey
	})
	now := m.now()
	hasReason := false
	var rows [][]cell
	var subs []string // per row: its workloads line, or ""
	for _, p := range peers {
		rx, tx := "-", "-"
		if r, ok := m.rates.get(p.PublicKey); ok {
			rx, tx = byteRate(r.rx), byteRate(r.tx)
		}
		st, ok := m.st.state(p.State)
		r := []cell{
			plain(dash(p.Name)),
			plain(dash(p.Address)),
			plain(dash(p.Address6)),
			plain(dash(strings.Join(p.Segments, ","))),
			plain(dash(p.Endpoint)),
			plain(handshakeAge(p.LastHandshake, now)),
			plain(rx),
			plain(tx),
			styledCell(dash(p.State), st, ok),
			plain(m.peerReason(p)),
		}
		sub := ""
		if len(p.Workloads) > 0 {
			sub = "  └ workloads " + api.WorkloadMarks(p.Workloads, w-14)
		}
		if !matches(m.filters[viewPeers], rowText(r), workloadNames(p.Workloads)) {
			continue
		}
		hasReason = hasReason || r[len(r)-1].text != ""
		rows = append(rows, r)
		subs = append(subs, sub)
	}
	if !hasReason {
		cols = cols[:len(cols)-1]
	}
	title, table, hidden := renderTableW(m.st, cols, rows, w)
	lines := make([]string, 0, len(table)+1)
	for i, l := range table {
		lines = append(lines, l)
		if subs[i] != "" {
			lines = append(lines, subs[i])
		}
	}
	if hidden > 0 && len(lines) > 0 {
		lines = append(lines, m.st.dim.Render(truncate(hiddenColumnsHint(hidden), w)))
	}
	return body{title: title, lines: lines, empty: "no peers"}
}

// peerReason is a peer's reason; for a quarantined one the short form
// "REASON (by WHO)" from status.quarantined (the state column says
// quarantined; the banner and segmesh status give the time).
func (m *Model) peerReason(p api.Peer) string {
	if p.State != api.StateQuarantined {
		return p.Reason
	}
	for _, q := range m.status.Quarantined {
		if q.PublicKey != p.PublicKey {
			continue
		}
		switch {
		case q.By == "":
			return q.Reason
		case q.Reason == "":
			return "by " + q.By
		}
		return q.Reason + " (by " + q.By + ")"
	}
	return p.Reason
}

// workloadNames is the text a filter matches a peer's workloads against.
func workloadNames(ws []api.Workload) string {
	names := make([]string, len(ws))
	for i, wl := range ws {
		names[i] = wl.Name
	}
	return strings.Join(names, " ")
}

// hiddenColumnsHint says how many columns a too narrow terminal hides.
func hiddenColumnsHint(n int) string {
	if n == 1 {
		return "(+1 column: widen the terminal)"
	}
	return fmt.Sprintf("(+%d columns: widen the terminal)", n)
}
