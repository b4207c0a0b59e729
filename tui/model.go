// Package tui is `segmesh top`: a live terminal view of one daemon, fed by
// its control API (status, segments, policy matrix, flows and the event
// stream). It imports only the api package.
//
// The Model is a bubbletea model whose Update is pure; every I/O call runs in
// a tea.Cmd against a Source, so tests drive it with canned events.
package tui

import (
	"fmt"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/segmesh/segmesh/api"
)

type viewID int

const (
	viewSegments viewID = iota
	viewPeers
	viewPolicy
	viewFlows
	viewMap
	numViews
)

var viewNames = [numViews]string{"Segments", "Peers", "Policy", "Flows", "Map"}

type connState int

const (
	connConnecting connState = iota
	connLive
	connReconnecting
)

// Options tune a Model; the zero value is usable.
type Options struct {
	// Now is the clock used for ages (handshakes, flows). Default time.Now.
	Now func() time.Time
	// Renderer renders the styles. Default lipgloss.DefaultRenderer(); tests
	// pass one with the termenv.Ascii profile for output without colours.
	Renderer *lipgloss.Renderer
	// MinBackoff and MaxBackoff bound the delay between reconnect attempts,
	// which doubles from min to max. Defaults 250ms and 2s.
	MinBackoff, MaxBackoff time.Duration
	// MaxFlows caps the denied and audited flows kept in memory (newest
	// win). Default 1000.
	MaxFlows int
	// MaxAllowed caps the allowed flows kept for the Map view (newest
	// win). Default 16384, as many as a daemon keeps.
	MaxAllowed int
}

// Model is the state of the UI. Create it with New, run it in a tea.Program
// and Close it once the program has returned.
type Model struct {
	src      Source
	io       *runner
	now      func() time.Time
	st       styles
	minBack  time.Duration
	maxBack  time.Duration
	maxFlows int
	maxAllow int

	width, height int
	view          viewID
	filters       [numViews]string
	filtering     bool
	scroll        [numViews]int
	colOffset     int // first "to" column shown in the policy matrix

	conn    connState
	connErr error
	gen     int
	backoff time.Duration

	status    *api.Status
	segments  []api.SegmentView
	matrix    *api.PolicyView
	flows     []api.Flow // denied and audited, newest first
	allowed   []api.Flow // allowed, newest first (the Map view)
	polling   bool       // a flows fetch is in flight
	rates     rateTracker
	policyKey string
	memberKey string
	fetchErr  [3]error // segments, matrix, flows
	seq       struct{ segments, matrix, flows int }
}

// New returns a model reading from src.
func New(src Source, opt Options) *Model {
	m := &Model{
		src:      src,
		io:       newRunner(),
		now:      opt.Now,
		minBack:  opt.MinBackoff,
		maxBack:  opt.MaxBackoff,
		maxFlows: opt.MaxFlows,
		maxAllow: opt.MaxAllowed,
		width:    80,
		height:   24,
		gen:      1,
		rates:    newRateTracker(),
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.minBack <= 0 {
		m.minBack = 250 * time.Millisecond
	}
	if m.maxBack < m.minBack {
		m.maxBack = max(2*time.Second, m.minBack)
	}
	if m.maxFlows <= 0 {
		m.maxFlows = 1000
	}
	if m.maxAllow <= 0 {
		m.maxAllow = 16384
	}
	r := opt.Renderer
	if r == nil {
		r = lipgloss.DefaultRenderer()
	}
	m.st = newStyles(r)
	return m
}

// Close stops the model's I/O and waits for it. Call it after the program
// has returned.
func (m *Model) Close() { m.io.close() }

// Init connects to the stream and starts the clock that refreshes ages.
func (m *Model) Init() tea.Cmd {
	return tea.Batch(m.connectCmd(m.gen), m.tickCmd())
}

// Update handles one message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.clampScroll()
		return m, nil
	case tea.KeyMsg:
		prev := m.view
		cmd := m.handleKey(msg)
		if m.view == viewMap && prev != viewMap {
			cmd = tea.Batch(cmd, m.pollFlowsCmd())
		}
		return m, cmd
	case tickMsg:
		// The stream carries no allowed flows: the Map view polls them
		// on the clock that refreshes the other views' ages.
		if m.view == viewMap {
			return m, tea.Batch(m.tickCmd(), m.pollFlowsCmd())
		}
		return m, m.tickCmd()
	case connectedMsg:
		if msg.gen != m.gen {
			msg.events.Close()
			return m, nil
		}
		return m, tea.Batch(m.nextCmd(msg.gen, msg.events),
			m.fetchSegmentsCmd(), m.fetchMatrixCmd(), m.fetchFlowsCmd())
	case connectFailedMsg:
		if msg.gen != m.gen {
			return m, nil
		}
		return m, m.disconnected(msg.err)
	case streamEndedMsg:
		if msg.gen != m.gen {
			return m, nil
		}
		return m, m.disconnected(msg.err)
	case retryMsg:
		if msg.gen != m.gen {
			return m, nil
		}
		m.gen++
		return m, m.connectCmd(m.gen)
	case eventMsg:
		if msg.gen != m.gen {
			return m, nil
		}
		m.conn, m.connErr, m.backoff = connLive, nil, 0
		cmds := append(m.applyEvent(msg.ev), m.nextCmd(msg.gen, msg.events))
		return m, tea.Batch(cmds...)
	case segmentsMsg:
		if msg.seq == m.seq.segments {
			m.fetchErr[0] = wrapErr("segments", msg.err)
			if msg.err == nil {
				m.segments = msg.segs
			}
		}
	case matrixMsg:
		if msg.seq == m.seq.matrix {
			m.fetchErr[1] = wrapErr("policy matrix", msg.err)
			if msg.err == nil {
				m.matrix = msg.pv
			}
		}
	case flowsMsg:
		if msg.seq == m.seq.flows {
			m.polling = false
			m.fetchErr[2] = wrapErr("flows", msg.err)
			if msg.err == nil {
				m.mergeFlows(msg.flows)
			}
		}
	}
	return m, nil
}

func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// disconnected records a lost or refused connection and schedules the next
// attempt after a doubling backoff.
func (m *Model) disconnected(err error) tea.Cmd {
	m.conn, m.connErr = connReconnecting, err
	if m.backoff == 0 {
		m.backoff = m.minBack
	} else {
		m.backoff = min(2*m.backoff, m.maxBack)
	}
	return m.retryCmd(m.gen, m.backoff)
}

// applyEvent folds one stream event into the state and returns the fetches
// it calls for: the matrix and segments when the policy changed, the
// segments when membership or segment assignment changed.
func (m *Model) applyEvent(ev api.Event) []tea.Cmd {
	switch ev.Type {
	case api.EventFlow:
		if ev.Flow != nil {
			m.mergeFlows([]api.Flow{*ev.Flow})
		}
		return nil
	case api.EventStatus:
		if ev.Status == nil {
			return nil
		}
	default:
		return nil
	}
	s := ev.Status
	t := m.now()
	if et, err := time.Parse(time.RFC3339Nano, ev.Time); err == nil {
		t = et
	}
	m.rates.update(s.Peers, t)
	m.status = s
	var cmds []tea.Cmd
	pk := fmt.Sprintf("%d/%s/%s", s.Policy.Version, s.Policy.Hash, s.Policy.Mode)
	mk := membershipKey(s)
	if m.policyKey != "" && pk != m.policyKey {
		cmds = append(cmds, m.fetchMatrixCmd(), m.fetchSegmentsCmd())
	} else if m.memberKey != "" && mk != m.memberKey {
		cmds = append(cmds, m.fetchSegmentsCmd())
	}
	m.policyKey, m.memberKey = pk, mk
	return cmds
}

// membershipKey changes whenever a node joins, leaves the list or changes
// segments, or one of its workloads does (states are taken from the status
// itself).
func membershipKey(s *api.Status) string {
	var b strings.Builder
	b.WriteString(strings.Join(s.Self.Segments, ","))
	writeWorkloads := func(ws []api.Workload) {
		for _, wl := range ws {
			fmt.Fprintf(&b, "/%s=%s", wl.Name, strings.Join(wl.Segments, ","))
		}
	}
	writeWorkloads(s.Self.Workloads)
	for _, p := range s.Peers {
		fmt.Fprintf(&b, "|%s=%s", p.PublicKey, strings.Join(p.Segments, ","))
		writeWorkloads(p.Workloads)
	}
	return b.String()
}

// View renders the whole screen: exactly height lines of at most width
// cells.
func (m *Model) View() string {
	w, h := m.size()
	b := m.body(w)
	avail := m.bodyRows()
	lines := make([]string, 0, h)
	if banner := m.renderBanner(w); banner != "" {
		lines = append(lines, banner)
	}
	lines = append(lines, m.renderHeader(w), m.renderTabs(w), "", b.title)
	rows := b.lines
	if len(rows) == 0 {
		rows = []string{m.st.dim.Render(b.empty)}
	}
	off := min(m.scroll[m.view], max(0, len(rows)-avail))
	rows = rows[off:min(len(rows), off+avail)]
	lines = append(lines, rows...)
	for len(lines) < h-1 {
		lines = append(lines, "")
	}
	lines = append(lines, m.renderFooter(w, off, avail, len(b.lines)))
	if len(lines) > h { // a terminal too small for the frame: keep the top
		lines = lines[:h]
	}
	for i, l := range lines {
		lines[i] = truncate(l, w)
	}
	return strings.Join(lines, "\n")
}

func (m *Model) size() (int, int) {
	w, h := m.width, m.height
	if w <= 0 {
		w = 80
	}
	if h <= 0 {
		h = 24
	}
	return w, h
}

// bodyRows is how many table rows fit under the quarantine banner (on a
// quarantined node), header, tabs, blank line and column titles, above the
// footer.
func (m *Model) bodyRows() int {
	_, h := m.size()
	if _, ok := m.selfQuarantine(); ok {
		h--
	}
	return max(0, h-5)
}

// body is a rendered view: column titles, its (filtered) rows, and the text
// shown when there are none.
type body struct {
	title string
	lines []string
	empty string
}

func (m *Model) body(w int) body {
	var b body
	switch m.view {
	case viewSegments:
		b = m.segmentsBody(w)
	case viewPeers:
		b = m.peersBody(w)
	case viewPolicy:
		b = m.policyBody(w)
	case viewMap:
		b = m.mapBody(w, m.bodyRows())
	default:
		b = m.flowsBody(w)
	}
	if f := m.filters[m.view]; f != "" && len(b.lines) == 0 {
		b.empty = fmt.Sprintf("no rows match %q (esc clears)", f)
	}
	return b
}

func (m *Model) clampScroll() {
	w, _ := m.size()
	n := len(m.body(w).lines)
	m.scroll[m.view] = max(0, min(m.scroll[m.view], n-m.bodyRows()))
}
