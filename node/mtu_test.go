package node

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// fakeMTU is fakeMesh's mtu auto side: path MTUs by address (missing: an
// error), the SetMTU calls and how many WireGuard peers were configured at
// each.
type fakeMTU struct {
	paths   map[netip.Addr]int
	lookups int
	sets    []int
	peersAt []int // len(peers) at each SetMTU
	setErr  error
}

func (m *fakeMesh) PathMTU(dst netip.Addr) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mtu.lookups++
	if v, ok := m.mtu.paths[dst]; ok {
		return v, nil
	}
	return 0, errors.New("fake: no route")
}

func (m *fakeMesh) SetMTU(mtu int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mtu.setErr != nil {
		return m.mtu.setErr
	}
	m.mtu.sets = append(m.mtu.sets, mtu)
	m.mtu.peersAt = append(m.mtu.peersAt, len(m.peers))
	return nil
}

func (m *fakeMesh) setPath(a string, mtu int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mtu.paths == nil {
		m.mtu.paths = map[netip.Addr]int{}
	}
	m.mtu.paths[netip.MustParseAddr(a)] = mtu
}

func (m *fakeMesh) mtuState() fakeMTU {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.mtu
	c.sets, c.peersAt = slices.Clone(c.sets), slices.Clone(c.peersAt)
	return c
}

func (m *fakeMesh) peerCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.peers)
}

// syncBuffer is a log sink safe for the sync loop and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mtuRig is a Node with only what tuneMTU uses, on a fake clock.
type mtuRig struct {
	n    *Node
	mesh *fakeMesh
	logs *syncBuffer
	now  time.Time
}

func newMTURig(advertiseMTU int) *mtuRig {
	r := &mtuRig{mesh: &fakeMesh{ev: &events{}}, logs: &syncBuffer{}, now: t0}
	r.mesh.setPath("192.0.2.1", advertiseMTU)
	r.n = &Node{
		log:  slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		deps: Deps{Now: func() time.Time { return r.now }},
		mesh: r.mesh,
		mtu:  autoMTU{on: true, advertise: netip.MustParseAddr("192.0.2.1"), current: advertiseMTU - mesh.Overhead},
	}
	return r
}

// tune runs tuneMTU at t0+at with the peers (name -> endpoint address).
func (r *mtuRig) tune(at time.Duration, peers ...string) {
	r.now = t0.Add(at)
	var v view
	for _, p := range peers {
		name, addr, _ := strings.Cut(p, "@")
		v.peers = append(v.peers, peerView{name: "key-" + name, rec: gossip.Record{Name: name},
			endpoint: netip.AddrPortFrom(netip.MustParseAddr(addr), 51820), configured: true})
	}
	r.n.tuneMTU(v)
}

func (r *mtuRig) expectSets(t *testing.T, when string, want ...int) {
	t.Helper()
	if got := r.mesh.mtuState().sets; !slices.Equal(got, want) {
		t.Fatalf("%s: SetMTU calls %v, want %v", when, got, want)
	}
	if len(want) > 0 && r.n.mtu.current != want[len(want)-1] {
		t.Fatalf("%s: current %d, want %d", when, r.n.mtu.current, want[len(want)-1])
	}
}

func TestMTUTarget(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	for _, c := range []struct {
		name  string
		paths []mtuPath
		want  int
		limit string // key of the limiting path
	}{
		{"advertise only", []mtuPath{{addr: a("192.0.2.1"), mtu: 1500}}, 1420, ""},
		{"lowest peer", []mtuPath{{addr: a("192.0.2.1"), mtu: 1500}, {key: "b", mtu: 1500}, {key: "c", mtu: 1400}}, 1320, "c"},
		{"advertise lowest", []mtuPath{{addr: a("192.0.2.1"), mtu: 1400}, {key: "b", mtu: 1500}}, 1320, ""},
		{"jumbo", []mtuPath{{addr: a("192.0.2.1"), mtu: 9000}, {key: "b", mtu: 9000}}, 8920, ""},
		{"floor", []mtuPath{{addr: a("192.0.2.1"), mtu: 1500}, {key: "tiny", mtu: 1300}}, 1280, "tiny"},
		{"first of equals", []mtuPath{{addr: a("192.0.2.1"), mtu: 1500}, {key: "b", mtu: 1400}, {key: "c", mtu: 1400}}, 1320, "b"},
	} {
		got, limit, ok := mtuTarget(c.paths)
		if !ok || got != c.want || limit.key != c.limit {
			t.Errorf("%s: got %d limited by %q (ok %v), want %d by %q", c.name, got, limit.key, ok, c.want, c.limit)
		}
	}
	if _, _, ok := mtuTarget(nil); ok {
		t.Error("no paths: ok")
	}
}

func TestMTUNextHysteresis(t *testing.T) {
	a := autoMTU{current: 1420}
	steps := []struct {
		at     time.Duration
		target int
		want   int
	}{
		{0, 1420, 0},                                 // unchanged
		{1 * time.Second, 1320, 1320},                // lower at once
		{2 * time.Second, 1420, 0},                   // higher: hold starts
		{2*time.Second + mtuRaiseHold - 1, 1420, 0},  // not yet
		{2*time.Second + mtuRaiseHold - 1, 1320, 0},  // back down: hold cancelled
		{3*time.Second + mtuRaiseHold, 1420, 0},      // a new hold starts here
		{3*time.Second + 2*mtuRaiseHold, 1400, 1400}, // held long enough: raise to the latest target
		{4*time.Second + 2*mtuRaiseHold, 1280, 1280}, // lower at once
	}
	for i, s := range steps {
		got := a.next(s.target, t0.Add(s.at))
		if got != s.want {
			t.Fatalf("step %d (target %d at %v): got %d, want %d", i, s.target, s.at, got, s.want)
		}
		if got != 0 {
			a.current = got
		}
	}
}

// TestTuneMTUPeerComesAndGoes: a peer on a smaller path lowers the MTU at
// once; when it leaves the MTU goes back up to the lowest remaining path
// only after mtuRaiseHold, and a quick return cancels the raise.
func TestTuneMTUPeerComesAndGoes(t *testing.T) {
	r := newMTURig(1500)
	r.mesh.setPath("192.0.2.11", 1500)
	r.mesh.setPath("192.0.2.12", 1400)
	r.mesh.setPath("192.0.2.13", 1450)
	b, c, d := "b@192.0.2.11", "c@192.0.2.12", "d@192.0.2.13"

	r.tune(0, b)
	r.expectSets(t, "b only")
	r.tune(time.Second, b, c)
	r.expectSets(t, "c joins", 1320)
	log := r.logs.String()
	if !strings.Contains(log, "mtu auto: interface MTU lowered") || !strings.Contains(log, "peer=c") ||
		!strings.Contains(log, "old=1420") || !strings.Contains(log, "path_mtu=1400") {
		t.Fatalf("the lowering must be logged with the peer that caused it:\n%s", log)
	}
	lookups := r.mesh.mtuState().lookups
	r.tune(2*time.Second, b, c)
	if got := r.mesh.mtuState().lookups; got != lookups {
		t.Fatalf("same endpoints within mtuRecheck: %d lookups, want none", got-lookups)
	}

	// c leaves for a moment and comes back: no raise.
	r.tune(3*time.Second, b)
	r.tune(3*time.Second+mtuRecheck, b)
	r.tune(4*time.Second+mtuRecheck, b, c)
	r.expectSets(t, "c back within the hold", 1320)

	// c leaves for good, d (1450) is there: up to 1370 after the hold.
	r.tune(10*time.Second, b, d)
	r.tune(10*time.Second+mtuRecheck, b, d)
	r.expectSets(t, "before the hold", 1320)
	r.tune(10*time.Second+mtuRaiseHold, b, d)
	r.expectSets(t, "after the hold", 1320, 1370)
	if log := r.logs.String(); !strings.Contains(log, "mtu auto: interface MTU raised") || !strings.Contains(log, "peer=d") {
		t.Fatalf("the raise must be logged with the path that now limits:\n%s", log)
	}
	// d leaves too: back to the advertise link's 1420.
	r.tune(30*time.Second, b)
	r.tune(30*time.Second+mtuRaiseHold, b)
	r.expectSets(t, "only b left", 1320, 1370, 1420)
}

// TestTuneMTURouteChange: a path that shrinks without a membership change
// is seen within mtuRecheck.
func TestTuneMTURouteChange(t *testing.T) {
	r := newMTURig(1500)
	r.mesh.setPath("192.0.2.11", 1500)
	b := "b@192.0.2.11"
	r.tune(0, b)
	r.mesh.setPath("192.0.2.11", 1400) // ip route add 192.0.2.11 ... mtu 1400
	r.tune(time.Second, b)
	r.expectSets(t, "before the recheck")
	r.tune(mtuRecheck, b)
	r.expectSets(t, "at the recheck", 1320)
}

func TestTuneMTUFloorAndErrors(t *testing.T) {
	r := newMTURig(1500)
	r.mesh.setPath("192.0.2.11", 1300)
	tiny, ghost := "tiny@192.0.2.11", "ghost@198.51.100.9" // ghost: no route
	r.tune(0, tiny, ghost)
	r.expectSets(t, "tiny path", 1280)
	r.tune(mtuRecheck, tiny, ghost)
	if n := strings.Count(r.logs.String(), "underlay path too small"); n != 1 {
		t.Fatalf("%d floor warnings, want 1 (once per path):\n%s", n, r.logs.String())
	}
	if !strings.Contains(r.logs.String(), "peer=tiny") {
		t.Fatalf("the floor warning must name the peer:\n%s", r.logs.String())
	}

	// SetMTU failing: state unchanged, retried at the next check.
	r2 := newMTURig(1500)
	r2.mesh.setPath("192.0.2.12", 1400)
	r2.mesh.mtu.setErr = errors.New("boom")
	r2.tune(0, "c@192.0.2.12")
	if r2.n.mtu.current != 1420 || !strings.Contains(r2.logs.String(), "cannot set the interface MTU") {
		t.Fatalf("current %d after a failed SetMTU; log:\n%s", r2.n.mtu.current, r2.logs.String())
	}
	r2.mesh.mu.Lock()
	r2.mesh.mtu.setErr = nil
	r2.mesh.mu.Unlock()
	r2.tune(mtuRecheck, "c@192.0.2.12")
	r2.expectSets(t, "retry", 1320)

	// Nothing readable: nothing changes.
	r3 := newMTURig(1500)
	delete(r3.mesh.mtu.paths, netip.MustParseAddr("192.0.2.1"))
	r3.tune(0, ghost)
	r3.expectSets(t, "no path known")

	// mtu: a number.
	r4 := newMTURig(1500)
	r4.n.mtu.on = false
	r4.mesh.setPath("192.0.2.12", 1400)
	r4.tune(0, "c@192.0.2.12")
	r4.expectSets(t, "mtu fixed")
	if r4.mesh.mtuState().lookups != 0 {
		t.Fatal("mtu fixed: paths looked up")
	}
}

// TestSyncLowersMTUBeforeAddingPeer runs the real sync loop: the MTU is
// lowered for a peer on a smaller path before WireGuard gets that peer.
func TestSyncLowersMTUBeforeAddingPeer(t *testing.T) {
	r := newRig(t, t.TempDir(), "")
	r.mesh.setPath("192.0.2.1", 1500) // rig's advertise address
	r.mesh.setPath("192.0.2.11", 1500)
	r.mesh.setPath("192.0.2.12", 1400)
	b, c := newTestNode(t), newTestNode(t)
	mb, mc := b.member("b", gossip.StateAlive, time.Now()), c.member("c", gossip.StateAlive, time.Now())
	mb.Addr, mc.Addr = netip.MustParseAddrPort("192.0.2.11:7946"), netip.MustParseAddrPort("192.0.2.12:7946")
	r.gossip.setMembers(mb)
	waitFor(t, "b configured", func() bool { return r.mesh.peerCount() == 1 })
	r.gossip.setMembers(mb, mc)
	waitFor(t, "c configured", func() bool { return r.mesh.peerCount() == 2 })
	st := r.mesh.mtuState()
	if !slices.Equal(st.sets, []int{1320}) || st.peersAt[0] != 1 {
		t.Fatalf("SetMTU calls %v with %v peers configured; want [1320] set while only b was a peer", st.sets, st.peersAt)
	}
}

// TestSyncFixedMTU: with `mtu: 1400` the node never retunes.
func TestSyncFixedMTU(t *testing.T) {
	t.Setenv("SEGMESH_MTU", "1400")
	r := newRig(t, t.TempDir(), "")
	r.mesh.setPath("192.0.2.1", 1500)
	r.mesh.setPath("192.0.2.12", 1300)
	c := newTestNode(t)
	mc := c.member("c", gossip.StateAlive, time.Now())
	mc.Addr = netip.MustParseAddrPort("192.0.2.12:7946")
	r.gossip.setMembers(mc)
	waitFor(t, "c configured", func() bool { return r.mesh.peerCount() == 1 })
	r.n.syncAndWait()
	if st := r.mesh.mtuState(); len(st.sets) != 0 || st.lookups != 0 {
		t.Fatalf("mtu fixed: %d lookups, SetMTU calls %v", st.lookups, st.sets)
	}
}
