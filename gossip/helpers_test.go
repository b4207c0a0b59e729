package gossip

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

var (
	testKey1 = bytes.Repeat([]byte{1}, 32)
	testKey2 = bytes.Repeat([]byte{2}, 32)
)

// testLogWriter forwards logs to t.Log until the test ends (memberlist may
// log from its goroutines while shutting down).
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB, name string) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	level := slog.LevelWarn
	if os.Getenv("GOSSIP_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With("node", name)
}

// testConfig is a loopback node with short timings.
func testConfig(t testing.TB, name string, seeds ...netip.AddrPort) Config {
	var s []string
	for _, a := range seeds {
		s = append(s, a.String())
	}
	return Config{
		NodeName:            name,
		BindAddr:            "127.0.0.1",
		Keys:                [][]byte{testKey1},
		Label:               "segmesh-test",
		Seeds:               s,
		Logger:              testLogger(t, name),
		ProbeInterval:       100 * time.Millisecond,
		ProbeTimeout:        50 * time.Millisecond,
		GossipInterval:      20 * time.Millisecond,
		PushPullInterval:    time.Second,
		TCPTimeout:          time.Second,
		SuspicionMult:       3,
		GossipToTheDeadTime: 2 * time.Second,
		DeadNodeReclaimTime: time.Second,
		RejoinInterval:      300 * time.Millisecond,
		JoinBackoffMin:      50 * time.Millisecond,
		JoinBackoffMax:      300 * time.Millisecond,
		CacheWriteInterval:  100 * time.Millisecond,
		WatchInterval:       50 * time.Millisecond,
	}
}

func testRecord(name string, tags map[string]string) Record {
	return Record{
		Format:     RecordFormat,
		Name:       name,
		PublicKey:  name,
		ListenPort: 51820,
		Address4:   netip.MustParseAddr("100.80.0.1"),
		Claimed:    1,
		Address6:   netip.MustParseAddr("fd5e:6d00::1"),
		Tags:       tags,
	}
}

// startNode creates and starts a node; it is shut down at test end.
func startNode(t testing.TB, cfg Config, rec Record) *Gossip {
	t.Helper()
	g, err := New(cfg, rec)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeName, err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	g.Start()
	return g
}

// startMesh starts n nodes "n0".."n<n-1>", all seeded with n0, and waits
// until every node sees every other alive.
func startMesh(t testing.TB, n int, tweak func(i int, c *Config)) []*Gossip {
	t.Helper()
	var nodes []*Gossip
	for i := range n {
		name := fmt.Sprintf("n%d", i)
		var cfg Config
		if i == 0 {
			cfg = testConfig(t, name)
		} else {
			cfg = testConfig(t, name, nodes[0].Addr())
		}
		if tweak != nil {
			tweak(i, &cfg)
		}
		nodes = append(nodes, startNode(t, cfg, testRecord(name, map[string]string{"i": fmt.Sprint(i)})))
	}
	waitConverged(t, nodes...)
	return nodes
}

func waitConverged(t testing.TB, nodes ...*Gossip) {
	t.Helper()
	for _, g := range nodes {
		for _, o := range nodes {
			if g != o {
				waitState(t, g, o.cfg.NodeName, StateAlive)
			}
		}
	}
}

// waitFor polls cond every 10ms until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func member(g *Gossip, name string) (Member, bool) {
	for _, m := range g.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func waitState(t testing.TB, g *Gossip, name string, s State) Member {
	t.Helper()
	var got Member
	waitFor(t, 15*time.Second, fmt.Sprintf("%s to see %s %s", g.cfg.NodeName, name, s), func() bool {
		m, ok := member(g, name)
		got = m
		return ok && m.State == s
	})
	return got
}

func waitRecord(t testing.TB, g *Gossip, name string, ok func(Record) bool) Record {
	t.Helper()
	var rec Record
	waitFor(t, 15*time.Second, fmt.Sprintf("%s to see the expected record of %s", g.cfg.NodeName, name), func() bool {
		m, found := member(g, name)
		if !found {
			return false
		}
		r, err := DecodeRecord(m.Meta)
		if err != nil {
			return false
		}
		rec = r
		return ok(r)
	})
	return rec
}

func tagsEqual(want map[string]string) func(Record) bool {
	return func(r Record) bool { return r.Ext == "" && maps.Equal(r.Tags, want) }
}

// gossipGoroutines lists goroutines running memberlist or this package's
// non-test code.
func gossipGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "hashicorp/memberlist.") || strings.Contains(g, "segmesh/gossip.(*") {
			if strings.Contains(g, "gossip.gossipGoroutines") {
				continue
			}
			out = append(out, g)
		}
	}
	return out
}

// mlTestNode is a memberlist node as an event delegate receives it.
func mlTestNode(name string, meta []byte) *memberlist.Node {
	return &memberlist.Node{Name: name, Addr: []byte{127, 0, 0, 9}, Port: 9, Meta: meta}
}
