package node

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/acl/nft"
	"github.com/segmesh/segmesh/cgroup"
	"github.com/segmesh/segmesh/cgroup/cgrouptest"
	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// events records the order in which the node touches its OS edges.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(s string) { e.mu.Lock(); e.log = append(e.log, s); e.mu.Unlock() }
func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.log...)
}

type fakeMesh struct {
	ev    *events
	mu    sync.Mutex
	peers []mesh.Peer
	mtu   fakeMTU // mtu auto (mtu_test.go)
	// counters maps peers to their rx bytes, reported by every device read
	counters map[mesh.Key]int64
	reads    int // device reads (ReconcileStats and Stats)
}

func (m *fakeMesh) Up() error                      { m.ev.add("mesh.up"); return nil }
func (m *fakeMesh) Backend() string                { return "fake" }
func (m *fakeMesh) Name() string                   { return "fake0" }
func (m *fakeMesh) SetAddress4(netip.Prefix) error { return nil }
func (m *fakeMesh) Stats() ([]mesh.PeerStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	return m.statsLocked(), nil
}

func (m *fakeMesh) statsLocked() []mesh.PeerStats {
	var out []mesh.PeerStats
	for _, p := range m.peers {
		if rx, ok := m.counters[p.PublicKey]; ok {
			out = append(out, mesh.PeerStats{PublicKey: p.PublicKey, RxBytes: rx})
		}
	}
	return out
}
func (m *fakeMesh) Close() error { m.ev.add("mesh.close"); return nil }
func (m *fakeMesh) ReconcileStats(p []mesh.Peer) (mesh.ReconcileResult, []mesh.PeerStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	m.peers = p
	return mesh.ReconcileResult{}, m.statsLocked(), nil
}

type fakeGossip struct {
	ev        *events
	mu        sync.Mutex
	members   []gossip.Member
	published [][]byte
	forgotten []string
	changes   chan struct{}
	docs      gossip.DocumentHandler
}

func (g *fakeGossip) Start() { g.ev.add("gossip.start") }
func (g *fakeGossip) Members() []gossip.Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]gossip.Member(nil), g.members...)
}
func (g *fakeGossip) setMembers(m ...gossip.Member) {
	g.mu.Lock()
	g.members = m
	g.mu.Unlock()
	select {
	case g.changes <- struct{}{}:
	default:
	}
}

func (g *fakeGossip) Changes() <-chan struct{}        { return g.changes }
func (g *fakeGossip) UpdateLocal(gossip.Record) error { return nil }
func (g *fakeGossip) SetKeys([][]byte) error          { return nil }
func (g *fakeGossip) NumMembers() int                 { return 1 }
func (g *fakeGossip) Leave(time.Duration) error       { g.ev.add("gossip.leave"); return nil }
func (g *fakeGossip) Shutdown() error                 { g.ev.add("gossip.shutdown"); return nil }
func (g *fakeGossip) Publish(kind string, data []byte) error {
	g.mu.Lock()
	g.published = append(g.published, data)
	g.mu.Unlock()
	return nil
}

func (g *fakeGossip) PublishUrgent(kind string, data []byte) error { return g.Publish(kind, data) }

type fakeFirewall struct {
	ev         *events
	mu         sync.Mutex
	quarantine nft.Quarantine // the last ApplyQuarantine
	last       acl.Enforced
	n          int   // applies that succeeded
	fail       error // when set, Apply fails with it
	// onApply, when set, runs after each successful Apply (fw.mu held):
	// what happens elsewhere while a sync is under way.
	onApply  func()
	egress   nft.Egress
	egressN  int
	observed []nft.Observation
}

func (f *fakeFirewall) Install() error { f.ev.add("fw.install"); return nil }
func (f *fakeFirewall) Apply(d acl.Enforced) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if f.n == 0 {
		f.ev.add("fw.apply")
	}
	f.n++
	f.last = d
	if f.onApply != nil {
		f.onApply()
	}
	return nil
}

// desired returns the last applied state per source (the flat form the
// tests compare).
func (f *fakeFirewall) desired() acl.Desired {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last.PerSource()
}

func (f *fakeFirewall) ApplyEgress(e nft.Egress) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.egress = e
	f.egressN++
	return nil
}

// lastEgress returns the last applied egress.
func (f *fakeFirewall) lastEgress() (nft.Egress, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.egress, f.egressN
}

func (f *fakeFirewall) EgressDenied() (map[string]map[netip.Addr]nft.Count, error) {
	return map[string]map[netip.Addr]nft.Count{}, nil
}

func (f *fakeFirewall) ApplyQuarantine(q nft.Quarantine) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.quarantine = q
	return nil
}

func (f *fakeFirewall) QuarantineDropped() (uint64, error) { return 0, nil }

func (f *fakeFirewall) Observed() ([]nft.Observation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]nft.Observation(nil), f.observed...), nil
}

// setObserved sets what Observed returns.
func (f *fakeFirewall) setObserved(o ...nft.Observation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observed = o
}

func (f *fakeFirewall) Counters() (uint64, uint64, error) { return 0, 0, nil }
func (f *fakeFirewall) DeniedBySource() (map[netip.Addr]nft.Count, error) {
	return map[netip.Addr]nft.Count{}, nil
}
func (f *fakeFirewall) Remove() error { f.ev.add("fw.remove"); return nil }
func (f *fakeFirewall) Close() error  { return nil }

// rig is a node on fakes, running until the test ends.
type rig struct {
	n        *Node
	ev       *events
	mesh     *fakeMesh
	gossip   *fakeGossip
	fw       *fakeFirewall
	cg       *cgrouptest.Fake // the workloads' cgroups, once the node follows them
	conntrak chan []netip.Addr
	cfg      *config.Config
	logs     *syncBuffer
	stop     func()
}

// newRig initialises a node directory (once per dir) and starts a node on it.
func newRig(t *testing.T, dir string, policyFile string) *rig {
	t.Helper()
	return newRigLog(t, dir, policyFile, nil)
}

// newRigLog is newRig with the node logging to log (nil: to r.logs).
func newRigLog(t *testing.T, dir string, policyFile string, log *slog.Logger) *rig {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "segmesh.yaml")); err != nil {
		if _, err := config.InitDir(config.InitOptions{Dir: dir, Name: "self", Advertise: "192.0.2.1", Tags: map[string]string{"role": "db"}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SEGMESH_STATE_DIR", filepath.Join(dir, "state"))
	t.Setenv("SEGMESH_CONTROL_SOCKET", filepath.Join(dir, "s.sock"))
	t.Setenv("SEGMESH_POLICY_FILE", policyFile)
	cfg, err := config.Load(filepath.Join(dir, "segmesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{ev: &events{}, cfg: cfg, conntrak: make(chan []netip.Addr, 16), logs: &syncBuffer{}}
	r.mesh, r.fw = &fakeMesh{ev: r.ev}, &fakeFirewall{ev: r.ev}
	r.gossip = &fakeGossip{ev: r.ev, changes: make(chan struct{}, 1)}
	deps := Deps{
		OpenMesh: func(mesh.Config, *slog.Logger) (Mesh, error) { r.ev.add("mesh.open"); return r.mesh, nil },
		NewGossip: func(c gossip.Config, _ gossip.Record) (Gossip, error) {
			r.ev.add("gossip.new")
			r.gossip.docs = c.Documents
			return r.gossip, nil
		},
		NewFirewall:     func(nft.Config, *slog.Logger) (Firewall, error) { return r.fw, nil },
		DeleteConntrack: func(a []netip.Addr) (int, error) { r.conntrak <- a; return len(a), nil },
		AutoMTU:         func(netip.Addr) (int, error) { return 1420, nil },
		OpenFlowReader: func(uint16, *slog.Logger) (FlowReader, error) {
			return nil, errors.New("no NFLOG in unit tests")
		},
		OpenCgroups: func(d []cgroup.Workload, _ *slog.Logger) (cgroup.Source, error) {
			r.cg = cgrouptest.New(d)
			return r.cg, nil
		},
		Now: time.Now,
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(r.logs, nil))
	}
	r.n, err = New(cfg, log, deps, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.n.Run(ctx) }()
	r.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(func() {
		if r.stop != nil {
			r.stop()
		}
	})
	return r
}

func (r *rig) shutdown() { r.stop(); r.stop = nil }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Forget drops a dead or departed member, like memberlist-backed gossip.
func (g *fakeGossip) Forget(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, m := range g.members {
		if m.Name == name && (m.State == gossip.StateDead || m.State == gossip.StateLeft) {
			g.members = append(g.members[:i:i], g.members[i+1:]...)
			g.forgotten = append(g.forgotten, name)
			return
		}
	}
}

// logRecords is a slog.Handler keeping every record (attributes flattened
// into "key=value" strings), for tests that check what a node logs.
type logRecords struct {
	mu   *sync.Mutex
	recs *[]logRecord
	with []string
}

type logRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

func newLogRecords() *logRecords { return &logRecords{mu: &sync.Mutex{}, recs: &[]logRecord{}} }

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, kv := range h.with {
		k, v, _ := strings.Cut(kv, "=")
		rec.Attrs[k] = v
	}
	r.Attrs(func(a slog.Attr) bool { rec.Attrs[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	*h.recs = append(*h.recs, rec)
	h.mu.Unlock()
	return nil
}
func (h *logRecords) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.with = slices.Clone(h.with)
	for _, a := range as {
		c.with = append(c.with, a.Key+"="+a.Value.String())
	}
	return &c
}
func (h *logRecords) WithGroup(string) slog.Handler { return h }

// find returns the records whose message contains msg.
func (h *logRecords) find(msg string) []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logRecord
	for _, r := range *h.recs {
		if strings.Contains(r.Msg, msg) {
			out = append(out, r)
		}
	}
	return out
}
