package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/segmesh/segmesh/api"
)

// renderHeader is the top line: node, mesh size, policy, trust on the left,
// the connection state on the right.
func (m *Model) renderHeader(w int) string {
	var right string
	switch m.conn {
	case connLive:
		right = m.st.live.Render("● live")
	case connReconnecting:
		right = m.st.warn.Render("reconnecting…")
	default:
		right = m.st.dim.Render("connecting…")
	}
	left := "waiting for status…"
	if s := m.status; s != nil {
		pol := "policy none"
		if s.Policy.Version > 0 {
			pol = fmt.Sprintf("policy v%d %s %s", s.Policy.Version, shortHash(s.Policy.Hash), s.Policy.Mode)
		}
		parts := []string{
			m.st.header.Render(dash(s.Self.Name)),
			plural(s.Members, "member"),
			pol,
			"trust " + dash(s.Trust),
		}
		if n := quarantinedPeers(s); n > 0 { // after the mesh size: an 80-column header keeps it
			parts = append(parts[:2], append([]string{m.st.bad.Render(fmt.Sprintf("%d quarantined", n))}, parts[2:]...)...)
		}
		if n := expiringCerts(s); n > 0 {
			parts = append(parts, m.st.warn.Render(plural(n, "cert")+" expiring <30d"))
		}
		left = strings.Join(parts, " · ")
	}
	room := w - width(right) - 1
	left = truncate(left, room)
	return left + strings.Repeat(" ", max(1, w-width(left)-width(right))) + right
}

// selfQuarantine is this node's own quarantine entry, if it is in
// quarantine.
func (m *Model) selfQuarantine() (api.Quarantined, bool) {
	if m.status == nil {
		return api.Quarantined{}, false
	}
	for _, q := range m.status.Quarantined {
		if q.Self {
			return q, true
		}
	}
	return api.Quarantined{}, false
}

// renderBanner is the line above the header on a quarantined node:
// "QUARANTINED since 11:58Z (2m00s ago) — mesh traffic only from: ops —
// reason", cut to w cells; "" when this node is not in quarantine.
func (m *Model) renderBanner(w int) string {
	q, ok := m.selfQuarantine()
	if !ok {
		return ""
	}
	since := q.Since
	if t, err := time.Parse(time.RFC3339Nano, q.Since); err == nil {
		since = fmt.Sprintf("%s (%s ago)", t.UTC().Format("15:04Z"), age(m.now().Sub(t)))
	}
	from := "nobody"
	if len(q.AllowFrom) > 0 {
		from = strings.Join(q.AllowFrom, ",")
	}
	text := "QUARANTINED since " + since + " — mesh traffic only from: " + from
	if q.Reason != "" {
		text += " — " + q.Reason
	}
	return m.st.banner.Render(pad(truncate(text, w), w, false))
}

// renderTabs is the view selector, with the active filter on the right.
func (m *Model) renderTabs(w int) string {
	parts := make([]string, numViews)
	for v := range numViews {
		label := fmt.Sprintf("%d %s", v+1, viewNames[v])
		if v == m.view {
			parts[v] = m.st.tabActive.Render("[" + label + "]")
		} else {
			parts[v] = m.st.tab.Render(" " + label + " ")
		}
	}
	left := strings.Join(parts, " ")
	f := m.filters[m.view]
	if f == "" || m.filtering {
		return left
	}
	right := m.st.filter.Render("filter: " + f)
	room := w - width(left) - 2
	if room < 10 {
		return left
	}
	right = truncate(right, room)
	return left + strings.Repeat(" ", w-width(left)-width(right)) + right
}

// renderFooter is the bottom line: the filter being typed, else the
// connection or fetch error, else key help and the scroll position.
func (m *Model) renderFooter(w, off, avail, n int) string {
	if m.filtering {
		return m.st.filter.Render("/"+m.filters[m.view]) + m.st.tabActive.Render(" ") +
			m.st.dim.Render("  enter keep · esc clear")
	}
	if m.conn == connReconnecting && m.connErr != nil {
		return m.st.warn.Render(errLine("reconnecting: ", m.connErr, w))
	}
	for _, err := range m.fetchErr {
		if err != nil {
			return m.st.bad.Render(errLine("error: ", err, w))
		}
	}
	help := "tab/1-5 view · / filter · ↑↓ scroll · q quit"
	switch m.view {
	case viewPolicy:
		help = "tab/1-5 view · / filter · ↑↓←→ scroll · q quit"
	case viewMap:
		help = "tab/1-5 view · / filter rows · q quit"
	}
	pos := ""
	if n > avail && avail > 0 {
		pos = fmt.Sprintf("%d-%d/%d", off+1, min(n, off+avail), n)
	}
	if pos == "" {
		return m.st.dim.Render(truncate(help, w))
	}
	help = truncate(help, w-width(pos)-1)
	return m.st.dim.Render(help) + strings.Repeat(" ", max(1, w-width(help)-width(pos))) + pos
}

// errLine is prefix and err in w cells; a long error keeps its end, where
// wrapped errors put the cause.
func errLine(prefix string, err error, w int) string {
	msg := err.Error()
	room := w - width(prefix)
	if room < 10 {
		return truncate(prefix+msg, w)
	}
	if width(msg) > room {
		msg = ansi.TruncateLeft(msg, width(msg)-room+1, "…")
	}
	return prefix + msg
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// quarantinedPeers counts the other nodes in quarantine.
func quarantinedPeers(s *api.Status) int {
	n := 0
	for _, q := range s.Quarantined {
		if !q.Self {
			n++
		}
	}
	return n
}

// expiringCerts counts certificates (this node and peers) ending within 30
// days, as the daemon flags them.
func expiringCerts(s *api.Status) int {
	n := 0
	if s.Self.CertExpiresSoon {
		n++
	}
	for _, p := range s.Peers {
		if p.CertExpiresSoon {
			n++
		}
	}
	return n
}
