package tui

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/segmesh/segmesh/api"
)

// TestViewFitsTerminal: every view, at every size, is exactly height lines
// none wider than the terminal.
func TestViewFitsTerminal(t *testing.T) {
	for _, w := range []int{20, 40, 60, 80, 100, 120, 200} {
		for _, h := range []int{3, 6, 12, 24, 40} {
			m := loaded(w, h)
			for v := range numViews {
				m.view = v
				out := m.View()
				lines := strings.Split(out, "\n")
				if len(lines) != h {
					t.Fatalf("%dx%d %s: %d lines", w, h, viewNames[v], len(lines))
				}
				for i, l := range lines {
					if width(l) > w {
						t.Fatalf("%dx%d %s: line %d is %d wide: %q", w, h, viewNames[v], i, width(l), l)
					}
				}
			}
		}
	}
}

func TestRates(t *testing.T) {
	r := newRateTracker()
	p := func(rx, tx int64) []api.Peer { return []api.Peer{{PublicKey: "k", RxBytes: rx, TxBytes: tx}} }
	r.update(p(1000, 0), t0)
	if _, ok := r.get("k"); ok {
		t.Fatal("rate from a single sample")
	}
	r.update(p(1500, 10), t0.Add(500*time.Millisecond))
	if _, ok := r.get("k"); ok {
		t.Fatal("rate over less than the minimum window")
	}
	r.update(p(3000, 4000), t0.Add(2*time.Second))
	got, ok := r.get("k")
	if !ok || got.rx != 1000 || got.tx != 2000 {
		t.Fatalf("rate %+v %v, want rx 1000 tx 2000 over 2s", got, ok)
	}
	r.update(p(10, 10), t0.Add(3*time.Second))
	if _, ok := r.get("k"); ok {
		t.Fatal("rate kept after counters went down")
	}
	r.update(nil, t0.Add(4*time.Second))
	if len(r.samples) != 0 {
		t.Fatal("sample of a vanished peer kept")
	}
}

func TestBackoffDoublesAndResets(t *testing.T) {
	m := New(newFake(), testOptions()) // 10ms..40ms
	m.io.close()
	var got []time.Duration
	for range 4 {
		m.Update(connectFailedMsg{gen: m.gen, err: errRefused})
		got = append(got, m.backoff)
		m.Update(retryMsg{gen: m.gen})
	}
	if want := "[10ms 20ms 40ms 40ms]"; fmt.Sprint(got) != want {
		t.Fatalf("backoff %v, want %s", got, want)
	}
	if m.conn != connReconnecting || !strings.Contains(m.View(), "reconnecting…") {
		t.Fatalf("not shown as reconnecting:\n%s", m.View())
	}
	m.Update(connectedMsg{gen: m.gen})
	m.Update(eventMsg{gen: m.gen, ev: fixtureStatus(0)})
	if m.backoff != 0 || m.conn != connLive {
		t.Fatalf("after an event: backoff %v conn %v", m.backoff, m.conn)
	}
	// Messages of an older connection are ignored.
	m.Update(streamEndedMsg{gen: m.gen - 1, err: errors.New("old")})
	if m.conn != connLive {
		t.Fatal("stale stream end changed the state")
	}
}

func TestRefetchTriggers(t *testing.T) {
	m := loaded(80, 24)
	segs, mats := m.seq.segments, m.seq.matrix
	m.Update(eventMsg{gen: 1, ev: fixtureStatus(1)})
	if m.seq.segments != segs || m.seq.matrix != mats {
		t.Fatal("unchanged status refetched")
	}
	ev := fixtureStatus(1)
	ev.Status.Peers = append(ev.Status.Peers, api.Peer{Name: "web-3", PublicKey: "new", Segments: []string{"web"}})
	m.Update(eventMsg{gen: 1, ev: ev})
	if m.seq.segments != segs+1 || m.seq.matrix != mats {
		t.Fatalf("new member: segments fetches %d→%d, matrix %d→%d", segs, m.seq.segments, mats, m.seq.matrix)
	}
	ev = fixtureStatus(1)
	ev.Status.Policy.Hash = "sha256:ffff"
	m.Update(eventMsg{gen: 1, ev: ev})
	if m.seq.matrix != mats+1 {
		t.Fatal("policy hash change did not refetch the matrix")
	}
	// A stale fetch answer (older sequence) is dropped.
	m.Update(matrixMsg{seq: mats, pv: &api.PolicyView{Version: 1}})
	if m.matrix.Version != 3 {
		t.Fatal("stale matrix answer applied")
	}
}

func TestMergeFlows(t *testing.T) {
	m := loaded(80, 24)
	n := len(m.flows)
	f := fixtureFlows()[1] // the oldest, from 100.80.9.9
	f.Count, f.LastSeen = 9, t0
	m.mergeFlows([]api.Flow{f})
	if len(m.flows) != n || m.flows[0].SrcAddr != "100.80.9.9" || m.flows[0].Count != 9 {
		t.Fatalf("update of an aggregate: %+v", m.flows[0])
	}
	old := f
	old.Count, old.LastSeen = 1, t0.Add(-time.Hour)
	m.mergeFlows([]api.Flow{old})
	if m.flows[0].Count != 9 {
		t.Fatal("older snapshot replaced a newer aggregate")
	}
	m.maxFlows = 2
	g := f
	g.Port = 54
	m.mergeFlows([]api.Flow{g})
	if len(m.flows) != 2 {
		t.Fatalf("cap: %d flows", len(m.flows))
	}
}

func TestFormats(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 59 * time.Second: "59s", 61 * time.Second: "1m01s",
		2*time.Hour + 5*time.Minute: "2h05m", 50 * time.Hour: "2d02h", -time.Second: "0s"} {
		if got := age(d); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
	for b, want := range map[float64]string{0: "0 B", 999: "999 B", 1000: "0.98 KiB", 2048: "2.00 KiB",
		51200: "50.0 KiB", 1 << 30: "1.00 GiB"} {
		if got := byteRate(b); got != want {
			t.Errorf("byteRate(%v) = %q, want %q", b, got, want)
		}
	}
	if got := shortHash("sha256:1a2b3c4d5e6f"); got != "1a2b3c4d" {
		t.Errorf("shortHash = %q", got)
	}
	if got := handshakeAge(nil, t0); got != "never" {
		t.Errorf("handshakeAge(nil) = %q", got)
	}
}

func TestErrLineKeepsCause(t *testing.T) {
	err := errors.New(`control socket /run/segmesh/segmesh.sock: Get "http://segmesh/v1/stream": dial unix: connect: no such file or directory`)
	got := errLine("reconnecting: ", err, 60)
	if width(got) != 60 || !strings.HasSuffix(got, "no such file or directory") || !strings.HasPrefix(got, "reconnecting: …") {
		t.Fatalf("errLine = %q (%d wide)", got, width(got))
	}
	if got := errLine("error: ", errors.New("short"), 60); got != "error: short" {
		t.Fatalf("errLine = %q", got)
	}
}

func TestHeaderFlagsExpiringCertificates(t *testing.T) {
	m := loaded(120, 40)
	if strings.Contains(m.View(), "expiring") {
		t.Fatal("no certificate expires in the fixture")
	}
	ev := fixtureStatus(1)
	ev.Status.Trust = "ca"
	ev.Status.Self.CertExpiresSoon = true
	ev.Status.Peers[0].CertExpiresSoon = true
	m.Update(eventMsg{gen: 1, ev: ev})
	if head := strings.SplitN(m.View(), "\n", 2)[0]; !strings.Contains(head, "2 certs expiring <30d") {
		t.Fatalf("header: %q", head)
	}
}

// TestSelfWorkloads: view 1 starts with this node's workloads and their
// states, then the segments; the filter applies to both tables, and a node
// without workloads shows the segments only.
func TestSelfWorkloads(t *testing.T) {
	m := loaded(80, 24)
	lines := strings.Split(m.View(), "\n")
	want := []string{
		"WORKLOAD STATE   SEGMENTS CGROUP                           REASON",
		"postgres active  db       /system.slice/postgresql.service",
		"backup   missing db,batch /system.slice/backup.service     cgroup does not exist",
		"",
		"SEGMENT     SELECTOR           MEMBER        ADDRESS      STATE",
	}
	if got := lines[3:8]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("view 1 starts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Narrow: the cgroup keeps its end (the unit), the reason goes first.
	m = loaded(50, 24)
	if got := strings.Split(m.View(), "\n")[4]; got != "postgres active  db       …lice/postgresql.service" {
		t.Errorf("50 wide: %q", got)
	}

	m = loaded(80, 24)
	m.filters[viewSegments] = "backup"
	body := m.body(80)
	if len(body.lines) != 1 || !strings.HasPrefix(body.lines[0], "backup") {
		t.Errorf("filter backup: %q", body.lines)
	}
	m.filters[viewSegments] = "monitoring"
	body = m.body(80)
	if !strings.HasPrefix(body.title, "SEGMENT") || len(body.lines) != 1 {
		t.Errorf("filter monitoring (no workload matches): %q %q", body.title, body.lines)
	}

	m = loaded(80, 24)
	ev := fixtureStatus(1)
	ev.Status.Self.Workloads = nil
	m.Update(eventMsg{gen: 1, ev: ev})
	if body := m.body(80); !strings.HasPrefix(body.title, "SEGMENT") || strings.Contains(m.View(), "WORKLOAD") {
		t.Errorf("without workloads:\n%s", m.View())
	}
}

// TestPeerWorkloads: view 2 puts a peer's workloads with their state marks
// on a line below it; the filter finds a peer by a workload's name, and a
// long list ends in "+N more" within the width.
func TestPeerWorkloads(t *testing.T) {
	m := loaded(80, 24)
	m.view = viewPeers
	body := m.body(80)
	if len(body.lines) != 7 || body.lines[1] != "  └ workloads api✓ cron✗" || !strings.HasPrefix(body.lines[2], "app-2") {
		t.Fatalf("peers:\n%s", strings.Join(body.lines, "\n"))
	}
	// At 80 columns ADDRESS6 and REASON are left out, and the last line says
	// so; wide enough, every column is there and no hint.
	if got := body.lines[6]; got != "(+2 columns: widen the terminal)" || strings.Contains(body.title, "ADDRESS6") {
		t.Errorf("80 wide: hint %q, title %q", got, body.title)
	}
	if wide := m.body(250); !strings.Contains(wide.title, "ADDRESS6") || !strings.Contains(wide.title, "REASON") ||
		strings.Contains(strings.Join(wide.lines, "\n"), "widen the terminal") {
		t.Errorf("250 wide:\n%s\n%s", wide.title, strings.Join(wide.lines, "\n"))
	}
	m.filters[viewPeers] = "cron"
	if body := m.body(80); len(body.lines) != 3 || !strings.HasPrefix(body.lines[0], "app-1") {
		t.Errorf("filter cron:\n%s", strings.Join(body.lines, "\n"))
	}

	ev := fixtureStatus(1)
	var many []api.Workload
	for i := range 20 {
		many = append(many, api.Workload{Name: fmt.Sprintf("job-%02d", i), State: api.WorkloadActive})
	}
	ev.Status.Peers[2].Workloads = many // app-1
	m.filters[viewPeers] = ""
	m.Update(eventMsg{gen: 1, ev: ev})
	sub := m.body(40).lines[1]
	if sub != "  └ workloads job-00✓ job-01✓ +18 more" {
		t.Errorf("40 wide: %q (%d)", sub, width(sub))
	}
}

// TestWorkloadChangeRefetchesSegments: a peer's workload changing segments
// refetches the segments, like a node doing so.
func TestWorkloadChangeRefetchesSegments(t *testing.T) {
	m := loaded(80, 24)
	segs := m.seq.segments
	ev := fixtureStatus(1)
	ev.Status.Peers[2].Workloads[0].Segments = []string{"app"}
	m.Update(eventMsg{gen: 1, ev: ev})
	if m.seq.segments != segs+1 {
		t.Fatalf("segments fetches %d→%d", segs, m.seq.segments)
	}
}

// TestEgressFlows: view 4 shows each flow's direction; an outbound flow
// (an egress denial at this node) by its destination peer, with the local
// workload ("-": the node) and the sending command ("-": not found),
// within 80 columns even with long names; the filter finds flows by
// workload and command; aggregates of different workloads to the same
// destination stay apart.
func TestEgressFlows(t *testing.T) {
	m := loaded(80, 24)
	m.view = viewFlows
	body := m.body(80)
	if body.title != "DIR PEER       SEGMENTS       PORT     WORKLOAD COMMAND  VERDICT COUNT LAST SEEN" {
		t.Fatalf("title %q", body.title)
	}
	want := []string{
		"in  app-2      app→db         icmp                       denied      1        1s",
		"out web-1      db→web         tcp/8080 postgres postgres denied      4        2s",
		"in  web-1      web→db         tcp/5432                   denied     12        3s",
		"out app-1      db→app,monito… udp/514  -        -        audited     2       20s",
		"in  100.80.9.9 -→db           udp/53                     denied      3     4m00s",
	}
	if strings.Join(body.lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("flows:\n%s\nwant:\n%s", strings.Join(body.lines, "\n"), strings.Join(want, "\n"))
	}

	// The node's own denial to the same destination is another aggregate.
	node := fixtureFlows()[2]
	node.Workload, node.Cgroup, node.PID, node.Command = "", "", 0, ""
	node.LastSeen = t0
	m.mergeFlows([]api.Flow{node})
	if len(m.flows) != 6 || m.flows[0].Workload != "" || m.flows[2].Workload != "postgres" {
		t.Fatalf("node and workload egress merged: %+v", m.flows[:3])
	}
	if l := m.body(80).lines[0]; l != "out web-1      db→web         tcp/8080 -        -        denied      4        0s" {
		t.Errorf("the node's egress: %q", l)
	}
	m.filters[viewFlows] = "postgres"
	if body := m.body(80); len(body.lines) != 1 || !strings.HasPrefix(body.lines[0], "out web-1") {
		t.Errorf("filter postgres:\n%s", strings.Join(body.lines, "\n"))
	}
	m.filters[viewFlows] = ""

	// Long names shrink, the workload and the command stay.
	long := fixtureFlows()[2]
	long.DstName, long.Workload, long.Command = "warehouse-replica-eu-west-1", "nightly-export-to-warehouse", "pg_dump_wrapper"
	long.SrcSegments, long.DstSegments = []string{"db", "batch", "backup"}, []string{"warehouse", "analytics", "reporting"}
	long.LastSeen = t0.Add(time.Second)
	m.mergeFlows([]api.Flow{long})
	for _, w := range []int{80, 60} {
		body := m.body(w)
		for i, l := range append([]string{body.title}, body.lines...) {
			if width(l) > w {
				t.Errorf("%d wide: line %d is %d wide: %q", w, i, width(l), l)
			}
		}
		if w == 80 && (!strings.HasPrefix(body.lines[0], "out warehouse") || !strings.Contains(body.lines[0], "nightly") ||
			!strings.Contains(body.lines[0], "pg_dump")) {
			t.Errorf("80 wide: %q", body.lines[0])
		}
	}
}

// TestQuarantineBanner: the banner fits every width, is styled (red,
// reversed) when colours are on, and goes away when this node is released;
// a quarantined peer's state is styled like a bad one.
func TestQuarantineBanner(t *testing.T) {
	for _, w := range []int{20, 40, 60, 80, 100, 120, 200} {
		for _, h := range []int{3, 6, 12, 24, 40} {
			m := loadedQuarantined(w, h)
			for v := range numViews {
				m.view = v
				lines := strings.Split(m.View(), "\n")
				if len(lines) != h {
					t.Fatalf("%dx%d %s: %d lines", w, h, viewNames[v], len(lines))
				}
				if !strings.HasPrefix(lines[0], truncate("QUARANTINED", w)) {
					t.Fatalf("%dx%d %s: first line %q", w, h, viewNames[v], lines[0])
				}
				for i, l := range lines {
					if width(l) > w {
						t.Fatalf("%dx%d %s: line %d is %d wide: %q", w, h, viewNames[v], i, width(l), l)
					}
				}
			}
		}
	}
	m := loadedQuarantined(200, 24)
	m.view = viewPeers
	if out := m.View(); !strings.Contains(out, "— INC-4711 exfiltration to 203.0.113.9 over tcp/443") ||
		!strings.Contains(out, " quarantined ") {
		t.Fatalf("reason or peer state missing at 200 columns:\n%s", out)
	}
	if m.bodyRows() != 24-6 {
		t.Fatalf("body rows %d under the banner, want %d", m.bodyRows(), 24-6)
	}
	ev := quarantine(fixtureStatus(1))
	ev.Status.Quarantined = ev.Status.Quarantined[:1] // db-1 released
	m.Update(eventMsg{gen: 1, ev: ev})
	if out := m.View(); strings.Contains(out, "QUARANTINED") || !strings.HasPrefix(out, "db-1 ") {
		t.Fatalf("banner after release:\n%s", out)
	}

	r := lipgloss.NewRenderer(nil)
	r.SetColorProfile(termenv.ANSI)
	st := newStyles(r)
	qs, ok := st.state(api.StateQuarantined)
	if !ok || qs.Render("x") != st.bad.Render("x") {
		t.Fatalf("quarantined state styled %q, want like a bad state %q", qs.Render("x"), st.bad.Render("x"))
	}
	opts := testOptions()
	opts.Renderer = r
	cm := New(newFake(), opts)
	cm.io.close()
	cm.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	cm.Update(connectedMsg{gen: 1})
	cm.Update(eventMsg{gen: 1, ev: quarantine(fixtureStatus(1))})
	if b := cm.renderBanner(80); !strings.Contains(b, "\x1b[") || width(b) != 80 {
		t.Fatalf("banner not styled or not the full width: %q", b)
	}
}
