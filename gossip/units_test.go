package gossip

import (
	"log/slog"
	"testing"
	"time"
)

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateAlive: "alive", StateSuspect: "suspect", StateDead: "dead", StateLeft: "left", State(9): "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("%d: %q, want %q", s, got, want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{NodeName: "a", BindAddr: "127.0.0.1", Keys: [][]byte{testKey1}, Label: "l"}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if c.AdvertiseAddr != "127.0.0.1" || c.ProbeInterval != time.Second || c.PushPullInterval != 30*time.Second ||
		c.RejoinInterval != DefaultRejoinInterval || c.DeadNodeReclaimTime != DefaultDeadNodeReclaimTime ||
		c.JoinBackoffMin != time.Second || c.JoinBackoffMax != 30*time.Second || c.Logger == nil {
		t.Errorf("defaults: %+v", c)
	}
	mc := c.memberlistConfig(7946)
	if !mc.GossipVerifyIncoming || !mc.GossipVerifyOutgoing || mc.Label != "l" || mc.BindAddr != "127.0.0.1" ||
		mc.AdvertisePort != 7946 || mc.DeadNodeReclaimTime != DefaultDeadNodeReclaimTime || mc.EnableCompression {
		t.Errorf("memberlist config: %+v", mc)
	}
}

func TestParseMemberlistLine(t *testing.T) {
	cases := []struct {
		in    string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=x\n", slog.LevelDebug, "Stream connection from=x"},
		{"[INFO] memberlist: Suspect n1 has failed, no acks received", slog.LevelInfo, "Suspect n1 has failed, no acks received"},
		{"[WARN] memberlist: Refuting", slog.LevelWarn, "Refuting"},
		{"[ERR] memberlist: Failed", slog.LevelError, "Failed"},
		{"Err: Could not set the deadline", slog.LevelInfo, "Err: Could not set the deadline"},
	}
	for _, c := range cases {
		level, msg := parseMemberlistLine(c.in)
		if level != c.level || msg != c.msg {
			t.Errorf("%q: %v %q, want %v %q", c.in, level, msg, c.level, c.msg)
		}
	}
	if name, ok := suspectName("Suspect abc+/= has failed, no acks received"); !ok || name != "abc+/=" {
		t.Errorf("suspectName: %q %v", name, ok)
	}
	if _, ok := suspectName("Suspect  has failed"); ok {
		t.Error("empty name accepted")
	}
}

func TestDeadLeftAndSuspectTransitions(t *testing.T) {
	g := newNodeWithRecord(t, testConfig(t, "self"))
	ev := &events{g: g}
	state := func(name string) State {
		m, ok := member(g, name)
		if !ok {
			t.Fatalf("%s not listed", name)
		}
		return m.State
	}

	// Self is never listed.
	ev.NotifyJoin(mlTestNode("self", nil))
	if len(g.Members()) != 0 {
		t.Fatal("self listed")
	}

	// Failure without intent: dead.
	ev.NotifyJoin(mlTestNode("a", nil))
	ev.NotifyLeave(mlTestNode("a", nil))
	if s := state("a"); s != StateDead {
		t.Errorf("a: %s, want dead", s)
	}
	// Intent first, then the leave: left.
	ev.NotifyJoin(mlTestNode("b", nil))
	g.leaveIntent("b", 1)
	ev.NotifyLeave(mlTestNode("b", nil))
	if s := state("b"); s != StateLeft {
		t.Errorf("b: %s, want left", s)
	}
	// Dead first, then the intent: left.
	ev.NotifyJoin(mlTestNode("c", nil))
	ev.NotifyLeave(mlTestNode("c", nil))
	g.leaveIntent("c", 2)
	if s := state("c"); s != StateLeft {
		t.Errorf("c: %s, want left", s)
	}
	// A replayed intent after coming back does not mark the next failure left.
	ev.NotifyJoin(mlTestNode("b", nil))
	g.leaveIntent("b", 1)
	ev.NotifyLeave(mlTestNode("b", nil))
	if s := state("b"); s != StateDead {
		t.Errorf("b after replayed intent: %s, want dead", s)
	}

	// Suspicion from memberlist's log line, cleared by a probe ack.
	ev.NotifyJoin(mlTestNode("d", nil))
	w := &mlLogWriter{log: g.log, onSuspect: func(n string) { g.setLiveness(n, StateSuspect) }}
	if _, err := w.Write([]byte("[INFO] memberlist: Suspect d has failed, no acks received\n")); err != nil {
		t.Fatal(err)
	}
	if s := state("d"); s != StateSuspect {
		t.Errorf("d: %s, want suspect", s)
	}
	(&pings{g: g}).NotifyPingComplete(mlTestNode("d", nil), time.Millisecond, nil)
	if s := state("d"); s != StateAlive {
		t.Errorf("d: %s, want alive", s)
	}
	// A suspicion never revives a dead node.
	g.setLiveness("a", StateSuspect)
	if s := state("a"); s != StateDead {
		t.Errorf("a: %s, want dead", s)
	}
	// A meta update of a suspect node means it is alive.
	g.setLiveness("d", StateSuspect)
	ev.NotifyUpdate(mlTestNode("d", []byte("new")))
	if m, _ := member(g, "d"); m.State != StateAlive || string(m.Meta) != "new" {
		t.Errorf("d after update: %+v", m)
	}
}

// numNodes (memberlist's retransmit sizing, read per gossip packet) is a
// counter kept by every state change: it must always equal the members
// alive or suspect, plus this node.
func TestNumNodesFollowsStates(t *testing.T) {
	g := newNodeWithRecord(t, testConfig(t, "self"))
	ev := &events{g: g}
	check := func(step string) {
		t.Helper()
		want := 1
		for _, m := range g.Members() {
			if m.State == StateAlive || m.State == StateSuspect {
				want++
			}
		}
		if got := g.numNodes(); got != want {
			t.Fatalf("after %s: numNodes = %d, want %d", step, got, want)
		}
	}
	check("start")
	ev.NotifyJoin(mlTestNode("self", nil))
	check("self joined")
	ev.NotifyJoin(mlTestNode("a", nil))
	ev.NotifyJoin(mlTestNode("b", nil))
	ev.NotifyJoin(mlTestNode("a", nil)) // again
	check("a and b joined")
	if g.numNodes() != 3 {
		t.Fatalf("numNodes = %d with two members, want 3", g.numNodes())
	}
	ev.NotifyUpdate(mlTestNode("c", []byte("x"))) // update before any join
	check("c updated")
	g.setLiveness("a", StateSuspect)
	check("a suspect")
	ev.NotifyLeave(mlTestNode("a", nil))
	check("a dead")
	ev.NotifyLeave(mlTestNode("a", nil)) // again
	check("a dead again")
	g.setLiveness("a", StateSuspect) // never revives the dead
	check("a suspected while dead")
	g.leaveIntent("a", 7)
	check("a left")
	ev.NotifyLeave(mlTestNode("d", nil)) // leave of a node never seen
	check("d dead")
	g.Forget("a")
	g.Forget("d")
	g.Forget("b") // alive: stays
	check("forgotten")
	ev.NotifyJoin(mlTestNode("a", nil))
	ev.NotifyUpdate(mlTestNode("d", []byte("y"))) // back through an update
	check("a and d back")
	if g.numNodes() != 5 {
		t.Fatalf("numNodes = %d with a, b, c, d alive, want 5", g.numNodes())
	}
}
