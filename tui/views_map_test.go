package tui

import (
	"fmt"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/segmesh/segmesh/api"
)

func ansiRenderer() *lipgloss.Renderer {
	r := lipgloss.NewRenderer(nil)
	r.SetColorProfile(termenv.ANSI)
	return r
}

// mapModel is a model of size w×h showing the Map view of segs and flows,
// fed without running any command.
func mapModel(r *lipgloss.Renderer, segs []api.SegmentView, flows []api.Flow, w, h int) *Model {
	opt := testOptions()
	opt.Renderer = r
	m := New(newFake(), opt)
	m.io.close()
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m.Update(connectedMsg{gen: 1})
	m.Update(eventMsg{gen: 1, ev: fixtureStatus(0)})
	m.Update(segmentsMsg{seq: m.seq.segments, segs: segs})
	m.Update(flowsMsg{seq: m.seq.flows, flows: flows})
	m.view = viewMap
	return m
}

func segViews(names ...string) []api.SegmentView {
	out := make([]api.SegmentView, len(names))
	for i, n := range names {
		out[i] = api.SegmentView{Name: n}
	}
	return out
}

func inFlow(peer string, segs []string, port uint16, verdict string, conns uint64) api.Flow {
	return api.Flow{SrcName: peer, Peer: peer, SrcAddr: "addr-" + peer, PeerSegments: segs, SrcSegments: segs,
		DstAddr: "100.80.3.7", DstSegments: []string{"db"}, Proto: "tcp", Port: port, Verdict: verdict,
		Direction: api.DirectionIn, Connections: conns, Count: conns, LastSeen: t0.Add(-time.Second)}
}

// fourSegmentFlows: web→db allowed and audited, app→db allowed, ops→db
// allowed (3M), db→app and db→ops one egress denial of a peer in both,
// and a denied source in no segment.
func fourSegmentFlows() []api.Flow {
	return []api.Flow{
		inFlow("web-1", []string{"web"}, 5432, api.VerdictAllowed, 1500),
		inFlow("web-2", []string{"web"}, 22, api.VerdictAudited, 20),
		inFlow("app-1", []string{"app"}, 5432, api.VerdictAllowed, 42),
		inFlow("ops-1", []string{"ops"}, 9100, api.VerdictAllowed, 3_000_000),
		{SrcAddr: "100.80.3.7", SrcSegments: []string{"db"}, DstName: "mon-1", DstAddr: "100.80.2.9", DstSegments: []string{"app", "ops"},
			Peer: "mon-1", PeerSegments: []string{"app", "ops"}, Proto: "udp", Port: 514, Verdict: api.VerdictDenied,
			Direction: api.DirectionOut, Connections: 5, Count: 5, LastSeen: t0.Add(-2 * time.Second)},
		{SrcAddr: "100.80.9.9", DstAddr: "100.80.3.7", DstSegments: []string{"db"}, Proto: "udp", Port: 53,
			Verdict: api.VerdictDenied, Count: 3, LastSeen: t0.Add(-3 * time.Second)},
	}
}

// checkFits fails unless out is exactly h lines of at most w cells.
func checkFits(t *testing.T, out string, w, h int) {
	t.Helper()
	lines := strings.Split(out, "\n")
	if len(lines) != h {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), h, out)
	}
	for i, l := range lines {
		if width(l) > w {
			t.Fatalf("line %d is %d cells wide (> %d): %q", i, width(l), w, l)
		}
	}
}

// mapGrid parses the Map view's matrix: column names, then each row's
// cells by name.
func mapGrid(t *testing.T, out string) ([]string, map[string][]string) {
	t.Helper()
	var cols []string
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, mapCorner):
			cols = strings.Fields(strings.TrimPrefix(l, mapCorner))
		case cols != nil && l == "":
			return cols, rows
		case cols != nil:
			f := strings.Fields(l)
			if len(f) != len(cols)+1 {
				t.Fatalf("row %q has %d cells, want %d", l, len(f)-1, len(cols))
			}
			rows[f[0]] = f[1:]
		}
	}
	t.Fatalf("no matrix in:\n%s", out)
	return nil, nil
}

func lineStarting(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestMapView80x24(t *testing.T) {
	segs := segViews("web", "app", "db", "ops")
	out := mapModel(asciiRenderer(), segs, fourSegmentFlows(), 80, 24).View()
	checkFits(t, out, 80, 24)
	if !strings.Contains(out, "[5 Map]") || !strings.Contains(out, "tab/1-5 view") {
		t.Fatalf("Map not the active view, or the footer lacks 1-5:\n%s", out)
	}
	cols, rows := mapGrid(t, out)
	if want := "web app db ops"; strings.Join(cols, " ") != want {
		t.Fatalf("columns %v, want %s", cols, want)
	}
	want := map[string]string{
		"web":     "· · 1.5k ·",
		"app":     "· · 42 ·",
		"db":      "· 5 · 5",
		"ops":     "· · 3M ·",
		"unknown": "· · 3 ·",
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %v, want %v", rows, want)
	}
	for r, w := range want {
		if got := strings.Join(rows[r], " "); got != w {
			t.Errorf("row %s: %q, want %q\n%s", r, got, w, out)
		}
	}
	if !strings.Contains(out, "denied  audited  allowed  · none") {
		t.Errorf("no legend:\n%s", out)
	}
	if strings.Contains(out, "more segments") {
		t.Errorf("a note on left-out segments, though all fit:\n%s", out)
	}

	// Colours: the worst verdict of each cell.
	m := mapModel(ansiRenderer(), segs, fourSegmentFlows(), 80, 24)
	col := m.View()
	checkFits(t, col, 80, 24)
	st := m.st
	for _, c := range []struct{ row, styled, what string }{
		{"web", st.warn.Render("1.5k"), "audited over allowed: yellow"},
		{"app", st.live.Render("42"), "allowed: green"},
		{"ops", st.live.Render("3M"), "allowed: green"},
		{"db", st.bad.Render("5"), "denied: red"},
		{"unknown", st.bad.Render("3"), "denied: red"},
		{"web", st.dim.Render("·"), "empty: a dim dot"},
	} {
		if l := lineStarting(col, st.header.Render(pad(c.row, 9, false))); !strings.Contains(l, c.styled) {
			t.Errorf("row %s: %s: no %q in %q", c.row, c.what, c.styled, l)
		}
	}
	legend := lineStarting(col, st.bad.Render("denied"))
	for _, s := range []string{st.warn.Render("audited"), st.live.Render("allowed")} {
		if !strings.Contains(legend, s) {
			t.Errorf("legend %q lacks %q", legend, s)
		}
	}
}

func TestMapUnknownOnlyWhenPresent(t *testing.T) {
	segs := segViews("web", "app", "db", "ops")
	out := mapModel(asciiRenderer(), segs, fourSegmentFlows()[:5], 80, 24).View()
	_, rows := mapGrid(t, out)
	if _, ok := rows[unknownSegment]; ok || strings.Contains(out, "unknown") {
		t.Fatalf("an unknown row without flows from no segment:\n%s", out)
	}
	out = mapModel(asciiRenderer(), segs, nil, 80, 24).View()
	_, rows = mapGrid(t, out)
	if len(rows) != 4 || strings.Join(rows["web"], " ") != "· · · ·" {
		t.Fatalf("no flows: want four rows of dots:\n%s", out)
	}
}

// TestMapTruncated: 30 segments do not fit 80×24: names are cut, the
// segments with traffic are kept, and the rest are counted.
func TestMapTruncated(t *testing.T) {
	var names []string
	for i := 1; i <= 30; i++ {
		names = append(names, fmt.Sprintf("segment-%02d", i))
	}
	flows := []api.Flow{
		inFlow("a", []string{"segment-29"}, 1, api.VerdictDenied, 7),
		inFlow("b", []string{"segment-30"}, 2, api.VerdictAllowed, 12_345),
	}
	for i := range flows {
		flows[i].DstSegments = []string{"segment-28"}
	}
	out := mapModel(asciiRenderer(), segViews(names...), flows, 80, 24).View()
	checkFits(t, out, 80, 24)
	cols, rows := mapGrid(t, out)
	if len(cols) != 10 || len(rows) != 16 {
		t.Fatalf("%d columns and %d rows, want 10 and 16:\n%s", len(cols), len(rows), out)
	}
	for _, c := range cols {
		if width(c) > mapAbbrev {
			t.Fatalf("column header %q wider than %d:\n%s", c, mapAbbrev, out)
		}
	}
	if cols[len(cols)-1] != "seg…28" {
		t.Errorf("the column with traffic is not shown (last %q):\n%s", cols[len(cols)-1], out)
	}
	for r, want := range map[string]string{"segment-29": "7", "segment-30": "12k", "segment-01": "·"} {
		if c := rows[r]; c == nil || c[len(c)-1] != want {
			t.Errorf("row %s: %v, want %s under seg…28:\n%s", r, c, want, out)
		}
	}
	if !strings.Contains(out, "+20 more segments as columns, +14 as rows: widen the terminal") {
		t.Errorf("no note on the left-out segments:\n%s", out)
	}
	for _, sz := range [][2]int{{20, 6}, {40, 12}, {60, 24}, {100, 30}, {200, 50}} {
		checkFits(t, mapModel(asciiRenderer(), segViews(names...), flows, sz[0], sz[1]).View(), sz[0], sz[1])
	}
	wide := mapModel(asciiRenderer(), segViews(names...), flows, 240, 40).View()
	checkFits(t, wide, 240, 40)
	if cols, rows := mapGrid(t, wide); len(cols) != 30 || len(rows) != 30 || strings.Contains(wide, "more segments") {
		t.Errorf("240×40: %d columns, %d rows, want all 30:\n%s", len(cols), len(rows), wide)
	}
}

// TestMapPolls: the stream carries no allowed flows, so the Map view
// fetches the flows when it is selected and on every tick while shown,
// one fetch at a time.
func TestMapPolls(t *testing.T) {
	m := loaded(80, 24)
	seq := m.seq.flows
	m.Update(tickMsg{})
	if m.seq.flows != seq {
		t.Fatal("a tick in view 1 fetched the flows")
	}
	m.Update(press("5"))
	if m.seq.flows != seq+1 || !m.polling {
		t.Fatalf("selecting the Map fetched %d times", m.seq.flows-seq)
	}
	m.Update(tickMsg{})
	if m.seq.flows != seq+1 {
		t.Fatal("a tick fetched again while a fetch was in flight")
	}
	fs := fixtureFlows()
	fs[len(fs)-1].Connections, fs[len(fs)-1].LastSeen = 2_500_000, t0
	m.Update(flowsMsg{seq: m.seq.flows, flows: fs})
	if m.polling {
		t.Fatal("still polling after the answer")
	}
	if _, rows := mapGrid(t, m.View()); rows["monitoring"][2] != "2.5M" {
		t.Fatalf("monitoring → db %v, want 2.5M:\n%s", rows["monitoring"], m.View())
	}
	m.Update(tickMsg{})
	if m.seq.flows != seq+2 {
		t.Fatal("a tick in the Map did not fetch the flows")
	}
	if len(m.flows) != 5 {
		t.Fatalf("%d flows in the Flows view's list, want the 5 denied and audited ones", len(m.flows))
	}
}

// TestMapLive: in a running program the Map follows the daemon's counts.
func TestMapLive(t *testing.T) {
	f := newFake()
	f.send(fixtureStatus(0))
	tm := startProgram(t, f, 80, 24)
	waitOutput(t, tm, "● live")
	tm.Type("5")
	waitOutput(t, tm, "[5 Map]", "1.2k", "monitoring")
	fs := fixtureFlows()
	fs[len(fs)-1].Connections, fs[len(fs)-1].LastSeen = 7_700, t0
	f.setFlows(fs)
	waitOutput(t, tm, "7.7k")
}

func TestCompactCount(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0", 999: "999", 1000: "1k", 1234: "1.2k", 9999: "9.9k", 10_000: "10k", 999_999: "999k",
		1_000_000: "1M", 3_000_000: "3M", 12_345_678: "12M", 1_500_000_000: "1.5G", 1<<64 - 1: "18E",
	} {
		if got := compactCount(n); got != want || width(got) > mapMinCell {
			t.Errorf("compactCount(%d) = %q, want %q", n, got, want)
		}
	}
}
