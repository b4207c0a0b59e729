package api

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// FormatStatus writes the human form of `segmesh status` within 80
// columns: a first line "THIS NODE IS QUARANTINED …" when this node is, a
// summary of this node, the nodes in quarantine (if any), a table of its
// workloads (if any), a table of peers (NAME, STATE, ADDRESS, ENDPOINT,
// SEGMENTS, HANDSHAKE; a peer's reason on a line of its own below it) and
// the peers' workloads (if any). Values too wide are cut with "…" and a
// last line says so; FormatStatusWide shows everything.
func FormatStatus(w io.Writer, s *Status, now time.Time) error {
	return formatStatus(w, s, now, statusWidth)
}

// FormatStatusWide is FormatStatus without the 80-column limit (`segmesh
// status -o wide`): nothing is cut, and the peer table has every column,
// ADDRESS6, TAGS, RX, TX, RX/s, TX/s and REASON too.
func FormatStatusWide(w io.Writer, s *Status, now time.Time) error {
	return formatStatus(w, s, now, 0)
}

// formatStatus is FormatStatus within width columns, or with width 0
// FormatStatusWide.
func formatStatus(w io.Writer, s *Status, now time.Time, width int) error {
	wide := width == 0
	if wide {
		width = math.MaxInt32
	}
	pv := "none (all inbound mesh traffic denied)"
	if s.Policy.Version > 0 {
		pv = fmt.Sprintf("v%d %s (%s)", s.Policy.Version, s.Policy.Hash, s.Policy.Mode)
	}
	cut := false
	line := func(format string, args ...any) {
		l := fmt.Sprintf(format, args...)
		if runes(l) > width {
			l, cut = string([]rune(l)[:width-1])+"…", true
		}
		fmt.Fprintln(w, l)
	}
	for _, q := range s.Quarantined {
		if q.Self {
			l := fmt.Sprintf("THIS NODE IS QUARANTINED since %s (allow-from %s)", q.Since, allowFromText(q.AllowFrom))
			if q.Reason != "" {
				l += ": " + q.Reason
			}
			line("%s", l)
			break
		}
	}
	line("node      %s  %s", s.Self.Name, s.Self.PublicKey)
	// Two parts on one line, or on two (b as bAlone) when that is too wide.
	pair := func(a, sep, b, bAlone string) {
		if runes(a+sep+b) <= width {
			line("%s", a+sep+b)
			return
		}
		line("%s", a)
		line("%s", bAlone)
	}
	segs := dash(strings.Join(s.Self.Segments, ","))
	pair(fmt.Sprintf("address   %s  %s", s.Self.Address, s.Self.Address6), "  ", "endpoint "+s.Self.Endpoint, "endpoint  "+s.Self.Endpoint)
	pair("tags      "+FormatTags(s.Self.Tags), "   ", "segments "+segs, "segments  "+segs)
	line("interface %s (%s)   mesh %d members   trust %s", s.Interface, s.Backend, s.Members, s.Trust)
	line("policy    %s", pv)
	fmt.Fprintln(w)
	if len(s.Quarantined) > 0 {
		cut = writeQuarantined(w, s.Quarantined, width) || cut
		fmt.Fprintln(w)
	}
	if len(s.Self.Workloads) > 0 {
		cut = writeWorkloads(w, s.Self.Workloads, width) || cut
		fmt.Fprintln(w)
	}
	if wide {
		if err := writePeersWide(w, s.Peers, now); err != nil {
			return err
		}
	} else {
		cut = writePeers(w, s.Peers, now, width) || cut
	}
	if writePeerWorkloads(w, s.Peers, width) || cut {
		fmt.Fprintf(w, "(cut to fit %d columns: segmesh status -o wide shows everything)\n", width)
	}
	return nil
}

// statusWidth is the width `segmesh status` fits in unless -o wide.
const statusWidth = 80

// writePeers writes the peers as a table of at most width columns: NAME,
// STATE, ADDRESS, ENDPOINT, SEGMENTS, HANDSHAKE, and a peer's reason (if
// any) on a line of its own below it. Values too wide are cut with "…"
// (NAME, ENDPOINT and SEGMENTS shrink); it reports whether any was.
func writePeers(w io.Writer, peers []Peer, now time.Time, width int) (cut bool) {
	if len(peers) == 0 {
		fmt.Fprintln(w, "NAME  STATE  ADDRESS  ENDPOINT  SEGMENTS  HANDSHAKE\n(no peers)")
		return false
	}
	titles := []string{"NAME", "STATE", "ADDRESS", "ENDPOINT", "SEGMENTS", "HANDSHAKE"}
	rows := make([][]string, len(peers))
	for i, p := range peers {
		rows[i] = []string{p.Name, p.State, dash(p.Address), dash(p.Endpoint), dash(strings.Join(p.Segments, ",")), handshakeAge(p.LastHandshake, now)}
	}
	widths := make([]int, len(titles))
	for i, t := range titles {
		widths[i] = runes(t)
		for _, r := range rows {
			widths[i] = max(widths[i], runes(r[i]))
		}
	}
	// Shrink the column furthest above its minimum, one at a time: NAME to
	// 12, ENDPOINT to 21 (an IPv4 address with a port), SEGMENTS to 8.
	minimum := []int{12, 0, 0, 21, 8, 0}
	for over := sum(widths) + 2*(len(widths)-1) - width; over > 0; over-- {
		best := -1
		for i, m := range minimum {
			if m > 0 && widths[i] > m && (best < 0 || widths[i]-m > widths[best]-minimum[best]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		widths[best]--
	}
	fit := func(s string, wd int) string {
		if runes(s) <= wd {
			return s
		}
		cut = true
		return string([]rune(s)[:max(wd-1, 0)]) + "…"
	}
	line := func(cells []string) {
		parts := make([]string, len(widths))
		for i, wd := range widths {
			c := fit(cells[i], wd)
			parts[i] = c + strings.Repeat(" ", max(wd-runes(c), 0))
		}
		fmt.Fprintln(w, strings.TrimRight(strings.Join(parts, "  "), " "))
	}
	line(titles)
	const indent = 2
	for i, r := range rows {
		line(r)
		if peers[i].Reason != "" {
			fmt.Fprintf(w, "%s%s\n", strings.Repeat(" ", indent), fit(peers[i].Reason, width-indent))
		}
	}
	return cut
}

// writePeersWide writes the peers as an aligned table of every column.
func writePeersWide(w io.Writer, peers []Peer, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tADDRESS\tADDRESS6\tENDPOINT\tSEGMENTS\tTAGS\tHANDSHAKE\tRX\tTX\tRX/s\tTX/s\tREASON")
	for _, p := range peers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.State, dash(p.Address), dash(p.Address6),
			dash(p.Endpoint), dash(strings.Join(p.Segments, ",")), FormatTags(p.Tags), handshakeAge(p.LastHandshake, now),
			byteSize(p.RxBytes), byteSize(p.TxBytes), byteSize(int64(p.RxRate)), byteSize(int64(p.TxRate)), dash(p.Reason))
	}
	if len(peers) == 0 {
		fmt.Fprintln(tw, "(no peers)")
	}
	return tw.Flush()
}

// writeQuarantined writes the nodes in quarantine as a table of at most
// width columns (this node's name marked "(this node)"), each entry's
// reason wrapped on lines of their own below it. Values too wide are cut
// with "…" (BY first, then NODE, then ALLOW-FROM); it reports whether any
// was.
func writeQuarantined(w io.Writer, qs []Quarantined, width int) (cut bool) {
	fmt.Fprintln(w, "quarantined (mesh traffic only from ALLOW-FROM; lift: segmesh release NODE)")
	titles := []string{"NODE", "SINCE", "BY", "ALLOW-FROM"}
	rows := make([][]string, len(qs))
	for i, q := range qs {
		name := dash(q.Node)
		if q.Self {
			name += " (this node)"
		}
		rows[i] = []string{name, dash(q.Since), dash(q.By), allowFromText(q.AllowFrom)}
	}
	const indent = 2
	widths := make([]int, len(titles))
	for i, t := range titles {
		widths[i] = runes(t)
		for _, r := range rows {
			widths[i] = max(widths[i], runes(r[i]))
		}
	}
	over := indent + sum(widths) + 2*(len(widths)-1) - width
	for _, c := range []struct{ col, min int }{{2, 12}, {0, 12}, {3, 10}} {
		d := min(max(over, 0), max(widths[c.col]-c.min, 0))
		widths[c.col] -= d
		over -= d
	}
	line := func(cells []string) {
		parts := make([]string, len(widths))
		for i, wd := range widths {
			c := cells[i]
			if runes(c) > wd {
				c, cut = string([]rune(c)[:wd-1])+"…", true
			}
			parts[i] = c + strings.Repeat(" ", wd-runes(c))
		}
		fmt.Fprintln(w, strings.TrimRight(strings.Repeat(" ", indent)+strings.Join(parts, "  "), " "))
	}
	line(titles)
	pre := strings.Repeat(" ", indent+widths[0]+2)
	for i, r := range rows {
		line(r)
		if qs[i].Reason != "" {
			for _, l := range wrap(qs[i].Reason, width-runes(pre)) {
				fmt.Fprintf(w, "%s%s\n", pre, l)
			}
		}
	}
	return cut
}

// allowFromText is an allow-from list as status shows it.
func allowFromText(segs []string) string {
	if len(segs) == 0 {
		return "nobody"
	}
	return strings.Join(segs, ",")
}

// wrap breaks s into lines of at most width runes at spaces; a word longer
// than width is broken inside.
func wrap(s string, width int) []string {
	width = max(width, 1)
	var lines []string
	cur := ""
	for _, word := range strings.Fields(s) {
		for runes(word) > width {
			if cur != "" {
				lines, cur = append(lines, cur), ""
			}
			lines, word = append(lines, string([]rune(word)[:width])), string([]rune(word)[width:])
		}
		switch {
		case cur == "":
			cur = word
		case runes(cur)+1+runes(word) <= width:
			cur += " " + word
		default:
			lines, cur = append(lines, cur), word
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

// writeWorkloads writes this node's workloads as a table of at most width
// columns, a workload's reason (if any) on a line of its own below it.
// Values too wide are cut with "…" (CGROUP first, keeping the path's end,
// which names the unit; then SEGMENTS); it reports whether any was.
func writeWorkloads(w io.Writer, ws []Workload, width int) (cut bool) {
	titles := []string{"WORKLOAD", "STATE", "SEGMENTS", "CGROUP"}
	rows := make([][]string, len(ws))
	for i, wl := range ws {
		rows[i] = []string{wl.Name, dash(wl.State), dash(strings.Join(wl.Segments, ",")), dash(wl.Cgroup)}
	}
	widths := make([]int, len(titles))
	for i, t := range titles {
		widths[i] = runes(t)
		for _, r := range rows {
			widths[i] = max(widths[i], runes(r[i]))
		}
	}
	over := sum(widths) + 2*(len(widths)-1) - width
	for _, c := range []struct{ col, min int }{{3, 16}, {2, 8}} {
		d := min(max(over, 0), max(widths[c.col]-c.min, 0))
		widths[c.col] -= d
		over -= d
	}
	fit := func(s string, wd int, keepEnd bool) string {
		if runes(s) <= wd {
			return s
		}
		cut = true
		if keepEnd {
			return "…" + string([]rune(s)[runes(s)-wd+1:])
		}
		return string([]rune(s)[:wd-1]) + "…"
	}
	line := func(cells []string) {
		parts := make([]string, len(widths))
		for i, wd := range widths {
			c := fit(cells[i], wd, i == 3)
			parts[i] = c + strings.Repeat(" ", wd-runes(c))
		}
		fmt.Fprintln(w, strings.TrimRight(strings.Join(parts, "  "), " "))
	}
	line(titles)
	indent := widths[0] + 2
	for i, r := range rows {
		line(r)
		if ws[i].Reason != "" {
			fmt.Fprintf(w, "%s%s\n", strings.Repeat(" ", indent), fit(ws[i].Reason, width-indent, false))
		}
	}
	return cut
}

// writePeerWorkloads writes, for each peer that has workloads, a line of
// its name and WorkloadMarks within width columns; it reports whether a
// list was cut.
func writePeerWorkloads(w io.Writer, peers []Peer, width int) (cut bool) {
	nameWidth := 0
	for _, p := range peers {
		if len(p.Workloads) > 0 {
			nameWidth = max(nameWidth, min(runes(p.Name), 24))
		}
	}
	if nameWidth == 0 {
		return false
	}
	fmt.Fprintf(w, "\npeer workloads (%s active, %s missing, %s rejected)\n",
		workloadMark(WorkloadActive), workloadMark(WorkloadMissing), workloadMark(WorkloadRejected))
	for _, p := range peers {
		if len(p.Workloads) == 0 {
			continue
		}
		name := p.Name
		if runes(name) > nameWidth {
			name, cut = string([]rune(name)[:nameWidth-1])+"…", true
		}
		marks := WorkloadMarks(p.Workloads, width-2-nameWidth-2)
		cut = cut || marks != WorkloadMarks(p.Workloads, 1<<30)
		fmt.Fprintf(w, "  %s%s  %s\n", name, strings.Repeat(" ", nameWidth-runes(name)), marks)
	}
	return cut
}

// WorkloadMarks lists workloads as names with a state mark, in order:
// "api✓ cron? old✗" (✓ active, ? missing, ✗ rejected). When that is longer
// than width runes it keeps the first names that fit and ends in "+N more";
// when not even one fits, it gives "N workloads".
func WorkloadMarks(ws []Workload, width int) string {
	items := make([]string, len(ws))
	for i, wl := range ws {
		items[i] = wl.Name + workloadMark(wl.State)
	}
	all := strings.Join(items, " ")
	if runes(all) <= width {
		return all
	}
	for k := len(items) - 1; k > 0; k-- {
		s := fmt.Sprintf("%s +%d more", strings.Join(items[:k], " "), len(items)-k)
		if runes(s) <= width {
			return s
		}
	}
	if len(ws) == 1 {
		return "1 workload"
	}
	return fmt.Sprintf("%d workloads", len(ws))
}

func workloadMark(state string) string {
	switch state {
	case WorkloadActive:
		return markOK
	case WorkloadRejected:
		return markFail
	}
	return "?"
}

func runes(s string) int { return utf8.RuneCountInString(s) }

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// FormatTags renders tags as k=v,k=v sorted by key.
func FormatTags(t map[string]string) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + t[k]
	}
	return dash(strings.Join(parts, ","))
}

func handshakeAge(ts *string, now time.Time) string {
	if ts == nil {
		return "never"
	}
	t, err := time.Parse(time.RFC3339, *ts)
	if err != nil {
		return *ts
	}
	return now.Sub(t).Truncate(time.Second).String() + " ago"
}

func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Marks of policy explain's text output.
const (
	markOK   = "\u2713" // ✓
	markFail = "\u2717" // ✗
)

func mark(ok bool) string {
	if ok {
		return markOK
	}
	return markFail
}

// FormatExplanation writes policy explain's text form: the verdict, both
// nodes' (or workloads', as NODE/WORKLOAD) segments, the notes, the
// allowing rules, then every rule with its from and to
// segments (each selector term matched or not, with the node's tag when
// not) and the port entry that matched (naming its service).
func FormatExplanation(out io.Writer, e *Explanation) {
	port := e.Port
	if e.Service != "" {
		port += " (service " + e.Service + ")"
	}
	from, to := withWorkload(e.From, e.FromWorkload), withWorkload(e.To, e.ToWorkload)
	fmt.Fprintf(out, "%s: %s -> %s %s (policy v%d, %s mode)\n", strings.ToUpper(e.Verdict), from, to, port, e.Version, e.Mode)
	fmt.Fprintf(out, "  %s segments: %s\n  %s segments: %s\n", from, noneIfEmpty(e.FromSegments), to, noneIfEmpty(e.ToSegments))
	for _, n := range e.Notes {
		fmt.Fprintf(out, "  note: %s\n", n)
	}
	if len(e.Rules) > 0 {
		fmt.Fprintf(out, "  allowed by: %s\n", strings.Join(e.Rules, ", "))
	} else {
		fmt.Fprintln(out, "  no rule allows it (default deny)")
	}
	if len(e.Considered) == 0 {
		return
	}
	fmt.Fprintln(out, "  rules:")
	for _, r := range e.Considered {
		verdict := "does not apply"
		if r.Allow {
			verdict = "allows it"
		}
		fmt.Fprintf(out, "    %s: %s\n", r.Rule, verdict)
		fmt.Fprintf(out, "      from %s\n", explainedSegments(r.From))
		fmt.Fprintf(out, "      to %s\n", explainedSegments(r.To))
		switch {
		case r.Service != "":
			fmt.Fprintf(out, "      port %s %s (service %s)\n", e.Port, markOK, r.Service)
		case r.PortMatch != "":
			fmt.Fprintf(out, "      port %s %s (%s)\n", e.Port, markOK, r.PortMatch)
		default:
			fmt.Fprintf(out, "      port %s %s (ports: %s)\n", e.Port, markFail, strings.Join(r.Ports, ", "))
		}
	}
}

// withWorkload is node, or node/workload when workload is set.
func withWorkload(node, workload string) string {
	if workload == "" {
		return node
	}
	return node + "/" + workload
}

// explainedSegments gives a rule's from or to list, e.g.
// "prod-db ✗: env: [prod, staging] ✗ (env=dev), role: db ✓"; several
// segments are separated by " | ".
func explainedSegments(segs []ExplainedSegment) string {
	parts := make([]string, len(segs))
	for i, s := range segs {
		switch {
		case s.Segment == "*":
			parts[i] = "*" + " " + mark(s.Match) + " (any node)"
		case len(s.Terms) == 0:
			parts[i] = s.Segment + " " + mark(s.Match) + " (no selector)"
		default:
			terms := make([]string, len(s.Terms))
			for j, t := range s.Terms {
				terms[j] = t.Term + " " + mark(t.Match)
				switch {
				case t.Match:
				case t.Present:
					terms[j] += " (" + t.Tag + "=" + t.Value + ")"
				default:
					terms[j] += " (" + t.Tag + " absent)"
				}
			}
			parts[i] = s.Segment + " " + mark(s.Match) + ": " + strings.Join(terms, ", ")
		}
	}
	return strings.Join(parts, " | ")
}

// noneIfEmpty joins s with ", ", or gives "(none)".
func noneIfEmpty(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}
