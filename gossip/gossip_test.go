package gossip

import (
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestThreeNodesJoinViaOneSeed(t *testing.T) {
	nodes := startMesh(t, 3, nil)
	for _, g := range nodes {
		if n := g.NumMembers(); n != 3 {
			t.Errorf("%s: NumMembers = %d, want 3", g.cfg.NodeName, n)
		}
		ms := g.Members()
		if len(ms) != 2 {
			t.Fatalf("%s: %d members, want 2 (self excluded): %+v", g.cfg.NodeName, len(ms), ms)
		}
		if m, ok := g.Member(g.cfg.NodeName); ok {
			t.Errorf("%s: Member(self) = %+v, want none", g.cfg.NodeName, m)
		}
		if m, ok := g.Member("nobody"); ok {
			t.Errorf("%s: Member(nobody) = %+v, want none", g.cfg.NodeName, m)
		}
		for _, m := range ms {
			if m.Name == g.cfg.NodeName {
				t.Errorf("%s lists itself", m.Name)
			}
			if one, ok := g.Member(m.Name); !ok || !reflect.DeepEqual(one, m) {
				t.Errorf("%s: Member(%s) = %+v, %v; Members has %+v", g.cfg.NodeName, m.Name, one, ok, m)
			}
			rec, err := DecodeRecord(m.Meta)
			if err != nil {
				t.Fatalf("%s: record of %s: %v", g.cfg.NodeName, m.Name, err)
			}
			want := testRecord(m.Name, map[string]string{"i": strings.TrimPrefix(m.Name, "n")})
			if rec.Name != want.Name || rec.PublicKey != want.PublicKey || !maps.Equal(rec.Tags, want.Tags) {
				t.Errorf("%s: record of %s = %+v, want %+v", g.cfg.NodeName, m.Name, rec, want)
			}
			var other *Gossip
			for _, o := range nodes {
				if o.cfg.NodeName == m.Name {
					other = o
				}
			}
			if m.Addr != other.Addr() {
				t.Errorf("%s: address of %s = %v, want %v", g.cfg.NodeName, m.Name, m.Addr, other.Addr())
			}
			if m.StateSince.IsZero() || time.Since(m.StateSince) > time.Minute {
				t.Errorf("%s: StateSince of %s = %v", g.cfg.NodeName, m.Name, m.StateSince)
			}
		}
	}
}

func TestUpdateLocalPropagatesTags(t *testing.T) {
	nodes := startMesh(t, 3, nil)
	tags := map[string]string{"role": "db", "env": "prod"}
	if err := nodes[1].UpdateLocal(testRecord("n1", tags)); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Gossip{nodes[0], nodes[2]} {
		waitRecord(t, g, "n1", tagsEqual(tags))
	}
}

func TestLeaveShowsLeft(t *testing.T) {
	nodes := startMesh(t, 3, nil)
	if err := nodes[2].Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, g := range nodes[:2] {
		m := waitState(t, g, "n2", StateLeft)
		if time.Since(m.StateSince) > 15*time.Second {
			t.Errorf("StateSince %v too old", m.StateSince)
		}
	}
	// Left nodes stay listed until forgotten, then reappear only if back.
	nodes[0].Forget("n2")
	if _, ok := member(nodes[0], "n2"); ok {
		t.Error("n2 still listed after Forget")
	}
	if n := nodes[0].NumMembers(); n != 2 {
		t.Errorf("NumMembers = %d, want 2", n)
	}
}

func TestShutdownWithoutLeaveShowsDead(t *testing.T) {
	nodes := startMesh(t, 3, nil)
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, g := range nodes[:2] {
		waitState(t, g, "n2", StateDead)
	}
	// Dead stays (the daemon decides the grace), Forget drops it.
	m, _ := member(nodes[0], "n2")
	if m.State != StateDead {
		t.Fatalf("n2 is %s, want dead", m.State)
	}
	nodes[0].Forget("n1") // alive: not dropped
	if _, ok := member(nodes[0], "n1"); !ok {
		t.Error("Forget dropped an alive node")
	}
	nodes[0].Forget("n2")
	if _, ok := member(nodes[0], "n2"); ok {
		t.Error("Forget did not drop a dead node")
	}
}

func TestSuspectThenAliveAgain(t *testing.T) {
	nodes := startMesh(t, 3, func(_ int, c *Config) {
		c.SuspicionMult = 30 // 3s of suspicion before dead
	})
	target := nodes[2].Addr().String()
	block := map[string]bool{target: true}
	nodes[0].tr.dropTo.Store(&block)
	nodes[1].tr.dropTo.Store(&block)
	waitFor(t, 10*time.Second, "n0 or n1 to suspect n2", func() bool {
		for _, g := range nodes[:2] {
			if m, ok := member(g, "n2"); ok && m.State == StateSuspect {
				return true
			}
		}
		return false
	})
	nodes[0].tr.dropTo.Store(nil)
	nodes[1].tr.dropTo.Store(nil)
	for _, g := range nodes[:2] {
		waitState(t, g, "n2", StateAlive)
	}
}

func TestChangesFires(t *testing.T) {
	a := startNode(t, testConfig(t, "a"), testRecord("a", nil))
	select { // drain
	case <-a.Changes():
	default:
	}
	b := startNode(t, testConfig(t, "b", a.Addr()), testRecord("b", nil))
	select {
	case <-a.Changes():
	case <-time.After(10 * time.Second):
		t.Fatal("no change signal on join")
	}
	waitState(t, a, "b", StateAlive)
	select {
	case <-a.Changes():
	default:
	}
	if err := b.UpdateLocal(testRecord("b", map[string]string{"x": "y"})); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Changes():
	case <-time.After(10 * time.Second):
		t.Fatal("no change signal on meta update")
	}
}

func TestShutdownStopsGoroutinesAndIsIdempotent(t *testing.T) {
	waitFor(t, 10*time.Second, "goroutines of earlier tests to stop", func() bool { return len(gossipGoroutines()) == 0 })
	nodes := startMesh(t, 2, nil)
	if len(gossipGoroutines()) == 0 {
		t.Fatal("goroutine check sees no gossip goroutines while running")
	}
	for _, g := range nodes {
		if err := g.Shutdown(); err != nil {
			t.Fatal(err)
		}
		if err := g.Shutdown(); err != nil {
			t.Fatalf("second Shutdown: %v", err)
		}
	}
	waitFor(t, 10*time.Second, "gossip goroutines to stop", func() bool { return len(gossipGoroutines()) == 0 })

	g := nodes[0]
	if err := g.Leave(time.Second); err == nil {
		t.Error("Leave after Shutdown succeeded")
	}
	if err := g.Publish("k", []byte("v")); err == nil {
		t.Error("Publish after Shutdown succeeded")
	}
	if err := g.UpdateLocal(testRecord("n0", map[string]string{"a": "b"})); err == nil {
		t.Error("UpdateLocal after Shutdown succeeded")
	}
	g.Start() // no-op after Shutdown
	if n := len(gossipGoroutines()); n != 0 {
		t.Errorf("Start after Shutdown started %d goroutines", n)
	}
}

func TestRestartOnNewAddressComesBack(t *testing.T) {
	nodes := startMesh(t, 3, nil)
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	old := nodes[2].Addr()
	waitState(t, nodes[0], "n2", StateDead)
	// Same name, another port: memberlist lets it reclaim the name after
	// DeadNodeReclaimTime.
	c := startNode(t, testConfig(t, "n2", nodes[0].Addr()), testRecord("n2", map[string]string{"v": "2"}))
	if c.Addr() == old {
		t.Fatal("restarted on the same address")
	}
	for _, g := range nodes[:2] {
		waitFor(t, 20*time.Second, "n2 alive at its new address", func() bool {
			m, ok := member(g, "n2")
			return ok && m.State == StateAlive && m.Addr == c.Addr()
		})
		waitRecord(t, g, "n2", tagsEqual(map[string]string{"v": "2"}))
	}
}

// Nodes without memberlist's compression (the default) mix with nodes that
// turn it on: membership and tag updates cross between them both ways.
func TestCompressionOffInteroperates(t *testing.T) {
	nodes := startMesh(t, 3, func(i int, c *Config) { c.Compress = i != 1 })
	if !nodes[0].cfg.memberlistConfig(0).EnableCompression || nodes[1].cfg.memberlistConfig(0).EnableCompression {
		t.Fatal("compression setting not passed to memberlist")
	}
	tags := map[string]string{"role": "db"}
	if err := nodes[1].UpdateLocal(testRecord("n1", tags)); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, nodes[0], "n1", tagsEqual(tags))
	waitRecord(t, nodes[2], "n1", tagsEqual(tags))
	tags2 := map[string]string{"role": "web"}
	if err := nodes[2].UpdateLocal(testRecord("n2", tags2)); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, nodes[1], "n2", tagsEqual(tags2))
}

// A node joining a small mesh is known to every member at once through its
// post-join push/pulls, even when no gossip, probe or periodic push/pull
// would carry its alive message for an hour.
func TestJoinTellsEveryMemberOfSmallMesh(t *testing.T) {
	quiet := func(_ int, c *Config) {
		c.GossipInterval, c.ProbeInterval, c.PushPullInterval = time.Hour, time.Hour, time.Hour
	}
	nodes := startMesh(t, 6, quiet)
	cfg := testConfig(t, "new", nodes[0].Addr())
	quiet(0, &cfg)
	startNode(t, cfg, testRecord("new", nil))
	for _, g := range nodes {
		waitState(t, g, "new", StateAlive)
	}
}
