package gossip

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func readCache(t *testing.T, path string) []cachedPeer {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var f cacheFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("cache file %s: %v", path, err)
	}
	return f.Peers
}

func cacheNames(peers []cachedPeer) []string {
	var out []string
	for _, p := range peers {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

func TestRestartJoinsViaPeerCacheWhenSeedIsGone(t *testing.T) {
	cachePath := filepath.Join(t.TempDir(), "peers.json")
	nodes := startMesh(t, 3, func(i int, c *Config) {
		if i == 2 {
			c.CachePath = cachePath
		}
	})
	waitFor(t, 10*time.Second, "cache to list n0 and n1", func() bool {
		return slices.Equal(cacheNames(readCache(t, cachePath)), []string{"n0", "n1"})
	})
	st, err := os.Stat(cachePath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("cache mode %v, want 0600", st.Mode().Perm())
	}
	for _, p := range readCache(t, cachePath) {
		if p.Name == "n2" || p.Addr == nodes[2].Addr().String() {
			t.Errorf("cache lists this node: %+v", p)
		}
	}

	c := nodes[2]
	port := c.Addr().Port()
	if err := c.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitState(t, nodes[1], "n2", StateLeft)
	seed := nodes[0].Addr()
	if err := nodes[0].Shutdown(); err != nil { // the seed is gone
		t.Fatal(err)
	}

	cfg := testConfig(t, "n2", seed)
	cfg.BindPort = int(port)
	cfg.CachePath = cachePath
	restarted := startNode(t, cfg, testRecord("n2", nil))
	waitState(t, restarted, "n1", StateAlive)
	waitState(t, nodes[1], "n2", StateAlive)
}

func TestCorruptCacheDoesNotStopStartup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "a")
	cfg.CachePath = path
	g, err := New(cfg, testRecord("a", nil))
	if err != nil {
		t.Fatalf("corrupt cache stopped New: %v", err)
	}
	_ = g.Shutdown()
}

func TestLoadCacheFiltersSelfAndBadEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.json")
	data := `{"peers":[{"name":"self","addr":"127.0.0.1:1"},{"name":"b","addr":"127.0.0.1:2"},
		{"name":"c","addr":"not-an-address"},{"name":"","addr":"127.0.0.1:3"}]}`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	peers, err := loadCache(path, "self")
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 1 || peers[0].Name != "b" {
		t.Fatalf("loaded %+v", peers)
	}
	if peers, err := loadCache(filepath.Join(t.TempDir(), "missing"), "self"); err != nil || peers != nil {
		t.Fatalf("missing cache: %v %v", peers, err)
	}
}

func TestJoinCandidates(t *testing.T) {
	cfg := testConfig(t, "a")
	g, err := New(cfg, testRecord("a", nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	g.cfg.Seeds = []string{g.Addr().String(), "127.0.0.1:1001", "127.0.0.1:1002"}
	g.cacheLoaded = []cachedPeer{{Name: "c", Addr: "127.0.0.1:1003"}, {Name: "alive", Addr: "127.0.0.1:1002"}}
	ev := &events{g: g}
	alive := mlTestNode("alive", nil)
	alive.Port = 1002
	alive.Addr = []byte{127, 0, 0, 1}
	ev.NotifyJoin(alive)
	dead := mlTestNode("dead", nil)
	dead.Port = 1004
	dead.Addr = []byte{127, 0, 0, 1}
	ev.NotifyJoin(dead)
	ev.NotifyLeave(dead)
	left := mlTestNode("left", nil)
	left.Port = 1005
	left.Addr = []byte{127, 0, 0, 1}
	ev.NotifyJoin(left)
	g.leaveIntent("left", 1)
	ev.NotifyLeave(left)

	addrs := func(cs []joinCandidate) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.addr)
		}
		slices.Sort(out)
		return out
	}
	// First join: seeds and cache, never our own address.
	got := addrs(g.joinCandidates(true))
	want := []string{"127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003", "127.0.0.1:1004"}
	if !slices.Equal(got, want) {
		t.Errorf("initial candidates %v, want %v", got, want)
	}
	// Rejoin: nodes not alive only (seed 1002 is alive), the loaded cache is
	// dropped after the first join, left nodes are not retried.
	g.markJoined()
	got = addrs(g.joinCandidates(false))
	want = []string{"127.0.0.1:1001", "127.0.0.1:1004"}
	if !slices.Equal(got, want) {
		t.Errorf("rejoin candidates %v, want %v", got, want)
	}
	if g.Addr() != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), g.Addr().Port()) {
		t.Errorf("Addr = %v", g.Addr())
	}
}

func TestPartitionHeals(t *testing.T) {
	nodes := startMesh(t, 2, func(_ int, c *Config) {
		c.GossipToTheDeadTime = 100 * time.Millisecond // memberlist forgets the dead fast: rejoin must heal
	})
	a, b := nodes[0], nodes[1]
	toB := map[string]bool{b.Addr().String(): true}
	toA := map[string]bool{a.Addr().String(): true}
	a.tr.dropTo.Store(&toB)
	b.tr.dropTo.Store(&toA)
	waitState(t, a, "n1", StateDead)
	waitState(t, b, "n0", StateDead)
	a.tr.dropTo.Store(nil)
	b.tr.dropTo.Store(nil)
	waitState(t, a, "n1", StateAlive)
	waitState(t, b, "n0", StateAlive)
}

func TestJoinRetriesUntilSeedAppears(t *testing.T) {
	// Reserve a port for the seed, start the joiner first.
	probe, err := New(testConfig(t, "probe"), testRecord("probe", nil))
	if err != nil {
		t.Fatal(err)
	}
	seedAddr := probe.Addr()
	_ = probe.Shutdown()

	b := startNode(t, testConfig(t, "b", seedAddr), testRecord("b", nil))
	waitFor(t, 5*time.Second, "two failed join attempts", func() bool {
		return b.joinFailures.Load() >= 2
	})
	cfg := testConfig(t, "a")
	cfg.BindPort = int(seedAddr.Port())
	a := startNode(t, cfg, testRecord("a", nil))
	waitState(t, b, "a", StateAlive)
	waitState(t, a, "b", StateAlive)
}

// A node that another node joins before its own seed is up keeps trying
// the seed with its join backoff, not only every RejoinInterval: two fresh
// nodes must not stay an island apart from the seed.
func TestJoinedByOtherStillJoinsSeed(t *testing.T) {
	probe, err := New(testConfig(t, "probe"), testRecord("probe", nil))
	if err != nil {
		t.Fatal(err)
	}
	seedAddr := probe.Addr()
	_ = probe.Shutdown()

	cfgA := testConfig(t, "a", seedAddr)
	cfgA.RejoinInterval = time.Minute // only the first join can heal it in time
	a := startNode(t, cfgA, testRecord("a", nil))
	b := startNode(t, testConfig(t, "b", a.Addr()), testRecord("b", nil))
	waitState(t, a, "b", StateAlive)
	waitFor(t, 5*time.Second, "a join attempt to the seed after b joined", func() bool {
		return a.joinFailures.Load() >= 2
	})
	cfgC := testConfig(t, "c")
	cfgC.BindPort = int(seedAddr.Port())
	c := startNode(t, cfgC, testRecord("c", nil))
	waitState(t, a, "c", StateAlive)
	waitState(t, b, "c", StateAlive)
	waitState(t, c, "b", StateAlive)
}

func TestRejoinRetriesDeadPeers(t *testing.T) {
	// a and b never met; b only remembers a as a dead member. The rejoin
	// loop must contact it.
	a := startNode(t, testConfig(t, "a"), testRecord("a", nil))
	b := startNode(t, testConfig(t, "b"), testRecord("b", nil))
	waitFor(t, 5*time.Second, "b's first join round (nobody to join)", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.joinedOnce
	})
	ev := &events{g: b}
	n := mlTestNode("a", nil)
	n.Addr = a.Addr().Addr().AsSlice()
	n.Port = a.Addr().Port()
	ev.NotifyJoin(n)
	ev.NotifyLeave(n)
	waitState(t, a, "b", StateAlive)
	waitState(t, b, "a", StateAlive)
}
