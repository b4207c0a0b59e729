package tui

import (
	"context"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/segmesh/segmesh/api"
)

// Source is where the UI gets its data: the control API, or a fake in tests.
// All calls must return once ctx is done.
type Source interface {
	Segments(ctx context.Context) ([]api.SegmentView, error)
	Matrix(ctx context.Context) (*api.PolicyView, error)
	Flows(ctx context.Context) ([]api.Flow, error)
	// Stream opens the event stream (GET /v1/stream).
	Stream(ctx context.Context) (Events, error)
}

// Events is an open event stream. Next blocks for the next event and returns
// an error (io.EOF included) once the stream is over; it must also return
// when the ctx given to Source.Stream is done.
type Events interface {
	Next() (api.Event, error)
	Close() error
}

// ClientSource adapts a control API client to Source.
func ClientSource(c *api.Client) Source { return clientSource{c} }

type clientSource struct{ c *api.Client }

func (s clientSource) Segments(ctx context.Context) ([]api.SegmentView, error) {
	return s.c.Segments(ctx)
}

func (s clientSource) Matrix(ctx context.Context) (*api.PolicyView, error) {
	return s.c.Matrix(ctx)
}

func (s clientSource) Flows(ctx context.Context) ([]api.Flow, error) { return s.c.Flows(ctx) }

func (s clientSource) Stream(ctx context.Context) (Events, error) {
	es, err := s.c.Stream(ctx)
	if err != nil {
		return nil, err
	}
	return es, nil
}

// runner owns the goroutines in which bubbletea runs our I/O commands: each
// command registers itself before it starts, and close cancels their context
// and waits for the registered ones to return.
type runner struct {
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func newRunner() *runner {
	ctx, cancel := context.WithCancel(context.Background())
	return &runner{ctx: ctx, cancel: cancel}
}

// cmd wraps f into a tea.Cmd run under the runner's context. After close the
// command does nothing and returns no message.
func (r *runner) cmd(f func(ctx context.Context) tea.Msg) tea.Cmd {
	return func() tea.Msg {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil
		}
		r.wg.Add(1)
		r.mu.Unlock()
		defer r.wg.Done()
		return f(r.ctx)
	}
}

func (r *runner) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// sleep waits d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Messages produced by the I/O commands. gen tags everything that belongs to
// one connection attempt so late messages of an old one are ignored.
type (
	connectedMsg struct {
		gen    int
		events Events
	}
	connectFailedMsg struct {
		gen int
		err error
	}
	eventMsg struct {
		gen    int
		events Events
		ev     api.Event
	}
	streamEndedMsg struct {
		gen int
		err error
	}
	retryMsg    struct{ gen int }
	tickMsg     struct{}
	segmentsMsg struct {
		seq  int
		segs []api.SegmentView
		err  error
	}
	matrixMsg struct {
		seq int
		pv  *api.PolicyView
		err error
	}
	flowsMsg struct {
		seq   int
		flows []api.Flow
		err   error
	}
)

func (m *Model) connectCmd(gen int) tea.Cmd {
	src := m.src
	return m.io.cmd(func(ctx context.Context) tea.Msg {
		ev, err := src.Stream(ctx)
		if err != nil {
			return connectFailedMsg{gen: gen, err: err}
		}
		return connectedMsg{gen: gen, events: ev}
	})
}

// nextCmd reads one event; on error it closes the stream.
func (m *Model) nextCmd(gen int, events Events) tea.Cmd {
	return m.io.cmd(func(context.Context) tea.Msg {
		ev, err := events.Next()
		if err != nil {
			events.Close()
			return streamEndedMsg{gen: gen, err: err}
		}
		return eventMsg{gen: gen, events: events, ev: ev}
	})
}

func (m *Model) retryCmd(gen int, d time.Duration) tea.Cmd {
	return m.io.cmd(func(ctx context.Context) tea.Msg {
		if !sleep(ctx, d) {
			return nil
		}
		return retryMsg{gen: gen}
	})
}

func (m *Model) tickCmd() tea.Cmd {
	return m.io.cmd(func(ctx context.Context) tea.Msg {
		if !sleep(ctx, time.Second) {
			return nil
		}
		return tickMsg{}
	})
}

func (m *Model) fetchSegmentsCmd() tea.Cmd {
	m.seq.segments++
	seq := m.seq.segments
	src := m.src
	return m.io.cmd(func(ctx context.Context) tea.Msg {
		s, err := src.Segments(ctx)
		return segmentsMsg{seq: seq, segs: s, err: err}
	})
}

func (m *Model) fetchMatrixCmd() tea.Cmd {
	m.seq.matrix++
	seq := m.seq.matrix
	src := m.src
	return m.io.cmd(func(ctx context.Context) tea.Msg {
		pv, err := src.Matrix(ctx)
		return matrixMsg{seq: seq, pv: pv, err: err}
	})
}

// pollFlowsCmd fetches the flows unless a fetch is in flight or the stream
// is down (the reconnect fetches them).
func (m *Model) pollFlowsCmd() tea.Cmd {
	if m.polling || m.conn != connLive {
		return nil
	}
	return m.fetchFlowsCmd()
}

func (m *Model) fetchFlowsCmd() tea.Cmd {
	m.polling = true
	m.seq.flows++
	seq := m.seq.flows
	src := m.src
	return m.io.cmd(func(ctx context.Context) tea.Msg {
		f, err := src.Flows(ctx)
		return flowsMsg{seq: seq, flows: f, err: err}
	})
}
