package gossip

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// joinFails checks that x cannot join a and that neither learns the other.
func joinFails(t *testing.T, a, x *Gossip) {
	t.Helper()
	n, err := x.ml.Join([]string{a.Addr().String()})
	if err == nil || n != 0 {
		t.Fatalf("join succeeded (%d contacts, err %v)", n, err)
	}
	if _, ok := member(a, x.cfg.NodeName); ok {
		t.Error("seed learned the intruder")
	}
	if _, ok := member(x, a.cfg.NodeName); ok {
		t.Error("intruder learned the seed")
	}
	if a.NumMembers() != 1 || x.NumMembers() != 1 {
		t.Errorf("members: seed %d, intruder %d", a.NumMembers(), x.NumMembers())
	}
}

func newNode(t *testing.T, cfg Config) *Gossip {
	t.Helper()
	g, err := New(cfg, testRecord(cfg.NodeName, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	return g
}

func TestOtherClusterKeyCannotJoin(t *testing.T) {
	a := newNode(t, testConfig(t, "a"))
	cfg := testConfig(t, "x")
	cfg.Keys = [][]byte{testKey2}
	joinFails(t, a, newNode(t, cfg))
}

func TestLabelMismatchCannotJoin(t *testing.T) {
	a := newNode(t, testConfig(t, "a"))
	cfg := testConfig(t, "x")
	cfg.Label = "other-mesh"
	joinFails(t, a, newNode(t, cfg))
}

func TestSameKeyAndLabelJoins(t *testing.T) { // control for the two tests above
	a := newNode(t, testConfig(t, "a"))
	x := newNode(t, testConfig(t, "x"))
	if n, err := x.ml.Join([]string{a.Addr().String()}); err != nil || n != 1 {
		t.Fatalf("join: %d %v", n, err)
	}
	waitState(t, a, "x", StateAlive)
}

func TestNewRefusesInsecureConfig(t *testing.T) {
	cases := map[string]func(c *Config){
		"no keys":         func(c *Config) { c.Keys = nil },
		"empty key list":  func(c *Config) { c.Keys = [][]byte{} },
		"bad key length":  func(c *Config) { c.Keys = [][]byte{[]byte("short")} },
		"no label":        func(c *Config) { c.Label = "" },
		"long label":      func(c *Config) { c.Label = strings.Repeat("l", 256) },
		"no bind":         func(c *Config) { c.BindAddr = "" },
		"bind any":        func(c *Config) { c.BindAddr = "0.0.0.0" },
		"bind any v6":     func(c *Config) { c.BindAddr = "::" },
		"bind hostname":   func(c *Config) { c.BindAddr = "localhost" },
		"no name":         func(c *Config) { c.NodeName = "" },
		"bad seed":        func(c *Config) { c.Seeds = []string{"no-port"} },
		"bad port":        func(c *Config) { c.BindPort = 70000 },
		"bad advertise":   func(c *Config) { c.AdvertiseAddr = "0.0.0.0" },
		"bad advert port": func(c *Config) { c.AdvertisePort = -1 },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, "a")
			mod(&cfg)
			if g, err := New(cfg, testRecord("a", nil)); err == nil {
				_ = g.Shutdown()
				t.Fatal("New accepted the config")
			}
		})
	}
}

func TestSetKeysRotation(t *testing.T) {
	nodes := startMesh(t, 2, nil)
	// Install the new key everywhere first, then make it primary, then drop
	// the old one: the mesh stays connected throughout.
	for _, g := range nodes {
		if err := g.SetKeys([][]byte{testKey1, testKey2}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range nodes {
		if err := g.SetKeys([][]byte{testKey2, testKey1}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range nodes {
		if err := g.SetKeys([][]byte{testKey2}); err != nil {
			t.Fatal(err)
		}
		keys := g.keyring.GetKeys()
		if len(keys) != 1 || !bytes.Equal(keys[0], testKey2) {
			t.Fatalf("keyring = %x", keys)
		}
	}
	tags := map[string]string{"rotated": "yes"}
	if err := nodes[0].UpdateLocal(testRecord("n0", tags)); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, nodes[1], "n0", tagsEqual(tags))

	// A node with only the old key is now locked out.
	old := newNode(t, testConfig(t, "old"))
	n, err := old.ml.Join([]string{nodes[0].Addr().String()})
	if err == nil || n != 0 {
		t.Fatalf("old key joined: %d %v", n, err)
	}
	if err := nodes[0].SetKeys(nil); err == nil {
		t.Error("SetKeys(nil) accepted")
	}
}

// A node started with a wrong cluster key joins as soon as SetKeys (a
// reload) gives it the right one, not at its next retry: the retry waits
// here are far longer than the test allows.
func TestSetKeysJoinsAtOnce(t *testing.T) {
	a := startNode(t, testConfig(t, "a"), testRecord("a", nil))
	cfg := testConfig(t, "b", a.Addr())
	cfg.Keys = [][]byte{testKey2}
	cfg.JoinBackoffMin, cfg.JoinBackoffMax = time.Hour, time.Hour
	b := startNode(t, cfg, testRecord("b", nil))
	waitFor(t, 5*time.Second, "a failed join attempt of b", func() bool { return b.joinFailures.Load() > 0 })
	fixKeyAndWait(t, a, b)
}

// The same once the first join is over: b joined c (its seed that shares
// its key) and retries a only every RejoinInterval, an hour here.
func TestSetKeysRejoinsAtOnce(t *testing.T) {
	a := startNode(t, testConfig(t, "a"), testRecord("a", nil))
	cc := testConfig(t, "c")
	cc.Keys = [][]byte{testKey2}
	c := startNode(t, cc, testRecord("c", nil))
	cfg := testConfig(t, "b", c.Addr(), a.Addr())
	cfg.Keys = [][]byte{testKey2}
	cfg.RejoinInterval = time.Hour
	b := startNode(t, cfg, testRecord("b", nil))
	waitState(t, b, "c", StateAlive)
	fixKeyAndWait(t, a, b)
}

// fixKeyAndWait gives b a's key and waits until they see each other. A
// SetKeys that changes nothing comes first: it must be accepted (whether it
// wakes the joiner is not observable here).
func fixKeyAndWait(t *testing.T, a, b *Gossip) {
	t.Helper()
	if _, ok := member(b, "a"); ok {
		t.Fatal("b knows a with the wrong key")
	}
	if err := b.SetKeys([][]byte{testKey2}); err != nil { // unchanged keyring
		t.Fatal(err)
	}
	if err := b.SetKeys([][]byte{testKey1, testKey2}); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, "a", StateAlive)
	waitState(t, a, "b", StateAlive)
}
