package tui

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/segmesh/segmesh/api"
)

// fakeSource serves canned data; events pushed with send reach whichever
// stream is open, end finishes it, refuse makes new connections fail.
type fakeSource struct {
	mu       sync.Mutex
	segments []api.SegmentView
	matrix   *api.PolicyView
	flows    []api.Flow
	refuseE  error
	calls    map[string]int
	events   chan api.Event
	ends     chan error
}

func newFake() *fakeSource {
	return &fakeSource{
		segments: fixtureSegments(),
		matrix:   fixtureMatrix(),
		flows:    fixtureFlows(),
		calls:    map[string]int{},
		events:   make(chan api.Event, 100),
		ends:     make(chan error, 10),
	}
}

func (f *fakeSource) count(what string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[what]
}

func (f *fakeSource) refuse(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuseE = err
}

func (f *fakeSource) setMatrix(pv *api.PolicyView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.matrix = pv
}

func (f *fakeSource) setFlows(fs []api.Flow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flows = fs
}

func (f *fakeSource) send(evs ...api.Event) {
	for _, ev := range evs {
		f.events <- ev
	}
}

func (f *fakeSource) end(err error) { f.ends <- err }

func (f *fakeSource) Segments(context.Context) ([]api.SegmentView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["segments"]++
	return f.segments, nil
}

func (f *fakeSource) Matrix(context.Context) (*api.PolicyView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["matrix"]++
	return f.matrix, nil
}

func (f *fakeSource) Flows(context.Context) ([]api.Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["flows"]++
	return f.flows, nil
}

func (f *fakeSource) Stream(ctx context.Context) (Events, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["stream"]++
	if f.refuseE != nil {
		return nil, f.refuseE
	}
	return &fakeEvents{ctx: ctx, f: f}, nil
}

type fakeEvents struct {
	ctx context.Context
	f   *fakeSource
}

func (e *fakeEvents) Next() (api.Event, error) {
	select {
	case ev := <-e.f.events:
		return ev, nil
	case err := <-e.f.ends:
		return api.Event{}, err
	case <-e.ctx.Done():
		return api.Event{}, e.ctx.Err()
	}
}

func (e *fakeEvents) Close() error { return nil }

var errRefused = errors.New("dial unix /run/segmesh/segmesh.sock: connect: connection refused")

// t0 is the fixed clock of the tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func asciiRenderer() *lipgloss.Renderer {
	r := lipgloss.NewRenderer(nil)
	r.SetColorProfile(termenv.Ascii)
	return r
}

func testOptions() Options {
	return Options{
		Now:        func() time.Time { return t0 },
		Renderer:   asciiRenderer(),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 40 * time.Millisecond,
	}
}

func ts(d time.Duration) *string {
	s := t0.Add(d).Format(time.RFC3339)
	return &s
}

const (
	keyDB1  = "ZGIxAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	keyWeb1 = "d2ViMQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	keyWeb2 = "d2ViMgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	keyApp1 = "YXBwMQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	keyApp2 = "YXBwMgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	keyBad  = "YmFkAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)

// fixtureStatus is the status at t0+at; step 1 is two seconds after step
// 0, with web-2 gone suspect and more bytes moved.
func fixtureStatus(step int) api.Event {
	at := t0.Add(time.Duration(step-1) * 2 * time.Second)
	web2 := api.StateUp
	members := 5
	if step > 0 {
		web2 = api.StateSuspect
		members = 6
	}
	k := int64(step)
	s := &api.Status{
		Self: api.Self{Name: "db-1", PublicKey: keyDB1, Address: "100.80.3.7", Address6: "fd5e:6d00::3:7",
			Endpoint: "192.0.2.11:51820", Tags: map[string]string{"role": "db", "env": "prod"}, Segments: []string{"db"},
			Workloads: []api.Workload{
				{Name: "postgres", Tags: map[string]string{"svc": "postgres"}, Segments: []string{"db"}, State: api.WorkloadActive,
					Cgroup: "/system.slice/postgresql.service"},
				{Name: "backup", Tags: map[string]string{"svc": "backup"}, Segments: []string{"db", "batch"}, State: api.WorkloadMissing,
					Cgroup: "/system.slice/backup.service", Reason: "cgroup does not exist"},
			}},
		Peers: []api.Peer{
			{Name: "web-1", PublicKey: keyWeb1, Address: "100.80.1.10", Address6: "fd5e:6d00::1:10", Endpoint: "192.0.2.21:51820",
				Segments: []string{"web"}, State: api.StateUp, LastHandshake: ts(-12 * time.Second), RxBytes: 1000 + k*4096, TxBytes: 500 + k*2048000},
			{Name: "web-2", PublicKey: keyWeb2, Address: "100.80.1.11", Address6: "fd5e:6d00::1:11", Endpoint: "192.0.2.22:51820",
				Segments: []string{"web"}, State: web2, LastHandshake: ts(-2*time.Minute - 7*time.Second), RxBytes: 10, TxBytes: 20},
			{Name: "app-1", PublicKey: keyApp1, Address: "100.80.2.5", Address6: "fd5e:6d00::2:5", Endpoint: "192.0.2.31:51820",
				Segments: []string{"app", "monitoring"}, State: api.StateUp, LastHandshake: ts(-75 * time.Second), RxBytes: 5e6 + k*3e6, TxBytes: 7e6 + k*1e5,
				Workloads: []api.Workload{
					{Name: "api", Tags: map[string]string{"svc": "api"}, Segments: []string{"app", "monitoring"}, State: api.WorkloadActive},
					{Name: "cron", Tags: map[string]string{"svc": "cron"}, Segments: []string{"app", "monitoring"}, State: api.WorkloadRejected,
						Reason: "svc=cron not allowed by the certificate"},
				}},
			{Name: "app-2", PublicKey: keyApp2, Address: "100.80.2.6", Address6: "fd5e:6d00::2:6", Endpoint: "192.0.2.32:51820",
				Segments: []string{"app"}, State: api.StateDead, LastHandshake: ts(-3 * time.Hour)},
			{Name: "rogue", PublicKey: keyBad, Address: "100.80.66.6", Endpoint: "192.0.2.66:51820",
				State: api.StateUntrusted, Reason: "ipv4 not derived from key"},
		},
		Policy:    api.Policy{Version: 3, Hash: "sha256:1a2b3c4d5e6f7a8b9c0d", Mode: "enforce"},
		Trust:     "open",
		Interface: "segmesh0",
		Backend:   "wireguard-go",
		Members:   members,
	}
	return api.Event{Type: api.EventStatus, Time: at.Format(time.RFC3339Nano), Status: s}
}

func fixtureSegments() []api.SegmentView {
	return []api.SegmentView{
		{Name: "web", Selector: map[string]string{"role": "web"}, Members: []api.SegmentMember{
			{Name: "web-2", PublicKey: keyWeb2, Address: "100.80.1.11", State: api.StateUp},
			{Name: "web-1", PublicKey: keyWeb1, Address: "100.80.1.10", State: api.StateUp},
		}},
		{Name: "app", Selector: map[string]string{"role": "app"}, Members: []api.SegmentMember{
			{Name: "app-1", PublicKey: keyApp1, Address: "100.80.2.5", State: api.StateUp},
			{Name: "app-2", PublicKey: keyApp2, Address: "100.80.2.6", State: api.StateDead},
		}},
		{Name: "db", Selector: map[string]string{"role": "db", "env": "prod"}, Members: []api.SegmentMember{
			{Name: "db-1", PublicKey: keyDB1, Address: "100.80.3.7", State: api.StateUp, Self: true},
		}},
		{Name: "monitoring", Selector: map[string]string{"role": "app", "team": "obs"}, Members: []api.SegmentMember{
			{Name: "app-1", PublicKey: keyApp1, Address: "100.80.2.5", State: api.StateUp},
		}},
		{Name: "batch", Selector: map[string]string{"role": "batch"}},
	}
}

func fixtureMatrix() *api.PolicyView {
	return &api.PolicyView{
		Version: 3, Hash: "sha256:1a2b3c4d5e6f7a8b9c0d", Mode: "enforce",
		Segments: []string{"web", "app", "db", "monitoring", "batch"},
		Matrix: []api.MatrixCell{
			{From: "web", To: "app", Ports: []string{"tcp/8080", "tcp/9000-9100", "udp/53", "icmp"}, Rules: []string{"web-to-app"}},
			{From: "app", To: "db", Ports: []string{"tcp/5432"}, Rules: []string{"app-to-db"}},
			{From: "monitoring", To: "*", Ports: []string{"tcp/9100"}, Rules: []string{"scrape"}},
			{From: "*", To: "web", Ports: []string{"icmp"}, Rules: []string{"ping-web"}},
			{From: "batch", To: "db", Ports: []string{"any"}, Rules: []string{"batch-all"}},
		},
	}
}

func fixtureFlows() []api.Flow {
	return []api.Flow{
		{SrcName: "web-1", SrcKey: keyWeb1, SrcAddr: "100.80.1.10", SrcSegments: []string{"web"}, DstAddr: "100.80.3.7",
			DstSegments: []string{"db"}, Proto: "tcp", Port: 5432, Verdict: api.VerdictDenied, Direction: api.DirectionIn, Count: 12,
			FirstSeen: t0.Add(-time.Minute), LastSeen: t0.Add(-3 * time.Second)},
		{SrcAddr: "100.80.9.9", DstAddr: "100.80.3.7", DstSegments: []string{"db"}, Proto: "udp", Port: 53,
			Verdict: api.VerdictDenied, Count: 3, FirstSeen: t0.Add(-10 * time.Minute), LastSeen: t0.Add(-4 * time.Minute)},
		// Egress: the postgres workload's process, and one of the node's
		// (no workload, no process found; the peer named through the status).
		{SrcAddr: "100.80.3.7", SrcSegments: []string{"db"}, DstName: "web-1", DstKey: keyWeb1, DstAddr: "100.80.1.10",
			DstSegments: []string{"web"}, Proto: "tcp", Port: 8080, Verdict: api.VerdictDenied, Direction: api.DirectionOut,
			Workload: "postgres", Cgroup: "/system.slice/postgresql.service", PID: 812, Command: "postgres", UID: ptr(109),
			Count: 4, FirstSeen: t0.Add(-30 * time.Second), LastSeen: t0.Add(-2 * time.Second)},
		{SrcAddr: "100.80.3.7", SrcSegments: []string{"db"}, DstAddr: "100.80.2.5", DstSegments: []string{"app", "monitoring"},
			Proto: "udp", Port: 514, Verdict: api.VerdictAudited, Direction: api.DirectionOut, UID: ptr(0),
			Count: 2, FirstSeen: t0.Add(-time.Minute), LastSeen: t0.Add(-20 * time.Second)},
		// Allowed (kept for the Map view only): app-1 (app and monitoring)
		// to this node's postgres.
		{SrcName: "app-1", SrcKey: keyApp1, SrcAddr: "100.80.2.5", SrcSegments: []string{"app", "monitoring"},
			DstAddr: "100.80.3.7", DstSegments: []string{"db"}, Proto: "tcp", Port: 5432, Verdict: api.VerdictAllowed,
			Direction: api.DirectionIn, Peer: "app-1", PeerSegments: []string{"app", "monitoring"},
			Connections: 1234, Packets: 56789, Bytes: 1 << 22, Count: 56789,
			FirstSeen: t0.Add(-time.Hour), LastSeen: t0.Add(-time.Second)},
	}
}

func ptr[T any](v T) *T { return &v }

// fixtureFlowEvent is a new flow from app-2 (named through the status only).
func fixtureFlowEvent() api.Event {
	f := &api.Flow{SrcKey: keyApp2, SrcAddr: "100.80.2.6", SrcSegments: []string{"app"}, DstAddr: "100.80.3.7",
		DstSegments: []string{"db"}, Proto: "icmp", Verdict: api.VerdictDenied, Count: 1,
		FirstSeen: t0.Add(-time.Second), LastSeen: t0.Add(-time.Second)}
	return api.Event{Type: api.EventFlow, Time: t0.Format(time.RFC3339Nano), Flow: f}
}
