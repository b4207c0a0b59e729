package mesh

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/mesh/meshtest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

var _ WGClient = (*meshtest.WireGuard)(nil)

const testDev = "smt0"

func testKey(t testing.TB) Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// attached returns a Mesh on a fake device with no peers.
func attached(t *testing.T) (*Mesh, *meshtest.WireGuard, Key) {
	t.Helper()
	wg := meshtest.NewWireGuard()
	self := testKey(t)
	wg.AddDevice(testDev, self, 51820)
	m, err := Attach(testDev, wg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, wg, self
}

func pfx(s string) netip.Prefix         { return netip.MustParsePrefix(s) }
func ap(s string) netip.AddrPort        { return netip.MustParseAddrPort(s) }
func udp(s string) *net.UDPAddr         { return net.UDPAddrFromAddrPort(ap(s)) }
func ipn(s string) net.IPNet            { return *ipNet(pfx(s)) }
func ka(d time.Duration) *time.Duration { return &d }

func peer(k Key, ep string, allowed ...string) Peer {
	p := Peer{PublicKey: k, Keepalive: Keepalive}
	if ep != "" {
		p.Endpoint = ap(ep)
	}
	for _, a := range allowed {
		p.AllowedIPs = append(p.AllowedIPs, pfx(a))
	}
	return p
}

func mustReconcile(t *testing.T, m *Mesh, peers ...Peer) ReconcileResult {
	t.Helper()
	res, err := m.Reconcile(peers)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	return res
}

// oneCall asserts exactly one ConfigureDevice call was made since the last
// reset, that it carries only peer changes, and returns its peers.
func oneCall(t *testing.T, wg *meshtest.WireGuard) []wgtypes.PeerConfig {
	t.Helper()
	calls := wg.Calls()
	if len(calls) != 1 {
		t.Fatalf("got %d ConfigureDevice calls, want 1: %+v", len(calls), calls)
	}
	c := calls[0]
	if c.Name != testDev || c.Config.ReplacePeers || c.Config.PrivateKey != nil ||
		c.Config.ListenPort != nil || c.Config.FirewallMark != nil {
		t.Fatalf("call touches more than peers: %+v", c)
	}
	wg.ResetCalls()
	return c.Config.Peers
}

func noCall(t *testing.T, wg *meshtest.WireGuard) {
	t.Helper()
	if calls := wg.Calls(); len(calls) != 0 {
		t.Fatalf("want no ConfigureDevice call, got %+v", calls)
	}
}

func equalPeers(t *testing.T, got, want []wgtypes.PeerConfig) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("peer configs differ\n got: %s\nwant: %s", fmtPeers(got), fmtPeers(want))
	}
}

func fmtPeers(ps []wgtypes.PeerConfig) string {
	s := ""
	for _, p := range ps {
		k := "<nil>"
		if p.PersistentKeepaliveInterval != nil {
			k = p.PersistentKeepaliveInterval.String()
		}
		s += fmt.Sprintf("\n  {%s remove=%v updateOnly=%v ep=%v ka=%s replaceIPs=%v ips=%v}",
			p.PublicKey, p.Remove, p.UpdateOnly, p.Endpoint, k, p.ReplaceAllowedIPs, p.AllowedIPs)
	}
	return s
}

func TestReconcileAddsPeer(t *testing.T) {
	m, wg, _ := attached(t)
	a := testKey(t).PublicKey()
	res := mustReconcile(t, m, peer(a, "192.0.2.2:51820", "100.80.0.9/32", "fd5e:6d00::9/128"))
	if res != (ReconcileResult{Added: 1}) {
		t.Fatalf("result %+v", res)
	}
	equalPeers(t, oneCall(t, wg), []wgtypes.PeerConfig{{
		PublicKey:                   a,
		Endpoint:                    udp("192.0.2.2:51820"),
		PersistentKeepaliveInterval: ka(25 * time.Second),
		ReplaceAllowedIPs:           true,
		AllowedIPs:                  []net.IPNet{ipn("100.80.0.9/32"), ipn("fd5e:6d00::9/128")},
	}})
	d, _ := wg.Device(testDev)
	if len(d.Peers) != 1 || d.Peers[0].PersistentKeepaliveInterval != 25*time.Second {
		t.Fatalf("device peers %+v", d.Peers)
	}
}

func TestReconcileAddWithoutEndpoint(t *testing.T) {
	m, wg, _ := attached(t)
	a := testKey(t).PublicKey()
	mustReconcile(t, m, peer(a, "", "100.80.0.9/32"))
	pcs := oneCall(t, wg)
	if pcs[0].Endpoint != nil {
		t.Fatalf("endpoint %v set for a peer with none", pcs[0].Endpoint)
	}
	// Once an endpoint is known it is set.
	mustReconcile(t, m, peer(a, "192.0.2.2:51820", "100.80.0.9/32"))
	equalPeers(t, oneCall(t, wg), []wgtypes.PeerConfig{{PublicKey: a, UpdateOnly: true, Endpoint: udp("192.0.2.2:51820")}})
}

func TestReconcileUnchangedMakesNoCall(t *testing.T) {
	m, wg, _ := attached(t)
	a, b := testKey(t).PublicKey(), testKey(t).PublicKey()
	mustReconcile(t, m,
		peer(a, "192.0.2.2:51820", "100.80.0.9/32", "fd5e:6d00::9/128"),
		peer(b, "[2001:db8::3]:51821", "100.80.0.10/32"))
	wg.ResetCalls()
	wg.SetTraffic(testDev, a, time.Unix(1700000000, 0), 100, 200)

	// Same peers, other order, allowed IPs reordered and spelled differently.
	res := mustReconcile(t, m,
		peer(b, "[2001:db8::3]:51821", "100.80.0.10/32", "100.80.0.10/32"),
		peer(a, "[::ffff:192.0.2.2]:51820", "fd5e:6d00::9/128", "100.80.0.9/32"))
	if res != (ReconcileResult{}) {
		t.Fatalf("result %+v, want nothing changed", res)
	}
	noCall(t, wg)
	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.PublicKey == a && (s.RxBytes != 100 || s.TxBytes != 200) {
			t.Fatalf("counters lost: %+v", s)
		}
	}
}

func TestReconcileRemovesPeer(t *testing.T) {
	m, wg, _ := attached(t)
	a, b := testKey(t).PublicKey(), testKey(t).PublicKey()
	mustReconcile(t, m, peer(a, "192.0.2.2:51820", "100.80.0.9/32"), peer(b, "192.0.2.3:51820", "100.80.0.10/32"))
	wg.ResetCalls()
	res := mustReconcile(t, m, peer(a, "192.0.2.2:51820", "100.80.0.9/32"))
	if res != (ReconcileResult{Removed: 1}) {
		t.Fatalf("result %+v", res)
	}
	equalPeers(t, oneCall(t, wg), []wgtypes.PeerConfig{{PublicKey: b, Remove: true}})
	res = mustReconcile(t, m)
	if res != (ReconcileResult{Removed: 1}) {
		t.Fatalf("result %+v", res)
	}
	equalPeers(t, oneCall(t, wg), []wgtypes.PeerConfig{{PublicKey: a, Remove: true}})
	if d, _ := wg.Device(testDev); len(d.Peers) != 0 {
		t.Fatalf("peers left: %+v", d.Peers)
	}
}

func TestReconcileEndpointOnlyWhenDesiredChanges(t *testing.T) {
	m, wg, _ := attached(t)
	a := testKey(t).PublicKey()
	mustReconcile(t, m, peer(a, "192.0.2.2:51820", "100.80.0.9/32"))
	wg.ResetCalls()

	// WireGuard roams the peer to a new address: the unchanged desired
	// endpoint must not overwrite it.
	wg.Roam(testDev, a, udp("198.51.100.7:40000"))
	mustReconcile(t, m, peer(a, "192.0.2.2:51820", "100.80.0.9/32"))
	noCall(t, wg)
	if st, _ := m.Stats(); st[0].Endpoint != ap("198.51.100.7:40000") {
		t.Fatalf("roamed endpoint overwritten: %v", st[0].Endpoint)
	}

	// The desired endpoint itself changes: it is set, nothing else.
	res := mustReconcile(t, m, peer(a, "192.0.2.5:51820", "100.80.0.9/32"))
	if res != (ReconcileResult{Updated: 1}) {
		t.Fatalf("result %+v", res)
	}
	equalPeers(t, oneCall(t, wg), []wgtypes.PeerConfig{{PublicKey: a, UpdateOnly: true, Endpoint: udp("192.0.2.5:51820")}})

	// Losing the desired endpoint keeps WireGuard's.
	mustReconcile(t, m, peer(a, "", "100.80.0.9/32"))
	noCall(t, wg)
}

func TestReconcileAllowedIPsChange(t *testing.T) {
	m, wg, _ := attached(t)
	a := testKey(t).PublicKey()
	mustReconcile(t, m, peer(a, "192.0.2.2:51820", "100.80.0.9/32", "fd5e:6d00::9/128"))
	wg.ResetCalls()
	res := mustReconcile(t, m, peer(a, "192.0.2.2:51820", "fd5e:6d00::9/128", "100.80.0.44/32"))
	if res != (ReconcileResult{Updated: 1}) {
		t.Fatalf("result %+v", res)
	}
	equalPeers(t, oneCall(t, wg), []wgtypes.PeerConfig{{
		PublicKey:         a,
		UpdateOnly:        true,
		ReplaceAllowedIPs: true,
		AllowedIPs:        []net.IPNet{ipn("100.80.0.44/32"), ipn("fd5e:6d00::9/128")},
	}})
	d, _ := wg.Device(testDev)
	if got := fmt.Sprint(prefixesOf(d.Peers[0].AllowedIPs)); got != "[100.80.0.44/32 fd5e:6d00::9/128]" {
		t.Fatalf("allowed IPs %s", got)
	}
}

func TestReconcileOneCallOrdered(t *testing.T) {
	m, wg, _ := attached(t)
	keys := make([]Key, 4)
	for i := range keys {
		keys[i] = testKey(t).PublicKey()
	}
	mustReconcile(t, m, peer(keys[0], "192.0.2.1:1", "100.80.0.1/32"), peer(keys[1], "192.0.2.2:1", "100.80.0.2/32"))
	wg.ResetCalls()
	// Remove 0, renumber 1 to 0's old address, add 2 and 3.
	res := mustReconcile(t, m,
		peer(keys[3], "192.0.2.4:1", "100.80.0.4/32"),
		peer(keys[1], "192.0.2.2:1", "100.80.0.1/32"),
		peer(keys[2], "192.0.2.3:1", "100.80.0.3/32"))
	if res != (ReconcileResult{Added: 2, Removed: 1, Updated: 1}) {
		t.Fatalf("result %+v", res)
	}
	pcs := oneCall(t, wg)
	if len(pcs) != 4 || !pcs[0].Remove || pcs[0].PublicKey != keys[0] || !pcs[1].UpdateOnly || pcs[1].PublicKey != keys[1] {
		t.Fatalf("want remove, update, then adds: %s", fmtPeers(pcs))
	}
	adds := []Key{pcs[2].PublicKey, pcs[3].PublicKey}
	if !slices.Contains(adds, keys[2]) || !slices.Contains(adds, keys[3]) || pcs[2].UpdateOnly || pcs[3].UpdateOnly {
		t.Fatalf("adds wrong: %s", fmtPeers(pcs))
	}
	// Reapplying is a no-op: the fake reached the desired state.
	mustReconcile(t, m, peer(keys[1], "192.0.2.2:1", "100.80.0.1/32"),
		peer(keys[2], "192.0.2.3:1", "100.80.0.3/32"), peer(keys[3], "192.0.2.4:1", "100.80.0.4/32"))
	noCall(t, wg)
}

func TestReconcileFixesPeersItDidNotSet(t *testing.T) {
	m, wg, _ := attached(t)
	a := testKey(t).PublicKey()
	// A peer configured by someone else (e.g. `wg set`), no keepalive.
	if err := wg.ConfigureDevice(testDev, wgtypes.Config{Peers: []wgtypes.PeerConfig{{
		PublicKey: a, Endpoint: udp("192.0.2.2:51820"), AllowedIPs: []net.IPNet{ipn("100.80.0.9/32")},
	}}}); err != nil {
		t.Fatal(err)
	}
	wg.ResetCalls()
	res := mustReconcile(t, m, peer(a, "192.0.2.2:51820", "100.80.0.9/32"))
	if res != (ReconcileResult{Updated: 1}) {
		t.Fatalf("result %+v", res)
	}
	// Same endpoint as WireGuard has: not re-set; only the keepalive.
	equalPeers(t, oneCall(t, wg), []wgtypes.PeerConfig{{PublicKey: a, UpdateOnly: true, PersistentKeepaliveInterval: ka(25 * time.Second)}})
}

func TestReconcileIgnoresOwnKey(t *testing.T) {
	m, wg, self := attached(t)
	a := testKey(t).PublicKey()
	mustReconcile(t, m, peer(self.PublicKey(), "192.0.2.1:51820", "100.80.0.1/32"), peer(a, "192.0.2.2:51820", "100.80.0.9/32"))
	pcs := oneCall(t, wg)
	if len(pcs) != 1 || pcs[0].PublicKey != a {
		t.Fatalf("own key configured: %s", fmtPeers(pcs))
	}
	mustReconcile(t, m, peer(self.PublicKey(), "192.0.2.1:51820", "100.80.0.1/32"), peer(a, "192.0.2.2:51820", "100.80.0.9/32"))
	noCall(t, wg)
}

func TestReconcileRejectsBadInput(t *testing.T) {
	a, b := testKey(t).PublicKey(), testKey(t).PublicKey()
	for name, peers := range map[string][]Peer{
		"duplicate key":      {peer(a, "192.0.2.2:1", "100.80.0.9/32"), peer(a, "192.0.2.3:1", "100.80.0.10/32")},
		"zero key":           {peer(Key{}, "192.0.2.2:1", "100.80.0.9/32")},
		"allowed IP twice":   {peer(a, "192.0.2.2:1", "100.80.0.9/32"), peer(b, "192.0.2.3:1", "100.80.0.9/32")},
		"invalid allowed IP": {{PublicKey: a, AllowedIPs: []netip.Prefix{{}}}},
	} {
		t.Run(name, func(t *testing.T) {
			m, wg, _ := attached(t)
			if _, err := m.Reconcile(peers); err == nil {
				t.Fatal("no error")
			}
			noCall(t, wg)
		})
	}
}

func TestReconcileConfigureFailureRetries(t *testing.T) {
	m, wg, _ := attached(t)
	a := testKey(t).PublicKey()
	mustReconcile(t, m, peer(a, "192.0.2.2:51820", "100.80.0.9/32"))
	wg.ResetCalls()
	wg.FailConfigure(errors.New("boom"))
	if _, err := m.Reconcile([]Peer{peer(a, "192.0.2.5:51820", "100.80.0.9/32")}); err == nil {
		t.Fatal("no error")
	}
	wg.FailConfigure(nil)
	wg.ResetCalls()
	// The failed endpoint change was not recorded as set: it is retried.
	mustReconcile(t, m, peer(a, "192.0.2.5:51820", "100.80.0.9/32"))
	equalPeers(t, oneCall(t, wg), []wgtypes.PeerConfig{{PublicKey: a, UpdateOnly: true, Endpoint: udp("192.0.2.5:51820")}})

	wg.FailDevice(errors.New("gone"))
	if _, err := m.Reconcile(nil); err == nil {
		t.Fatal("no error when the device cannot be read")
	}
	if _, err := m.Stats(); err == nil {
		t.Fatal("Stats: no error when the device cannot be read")
	}
}

// TestReconcileRandomSequence drives random desired states and checks that
// WireGuard always ends up equal to them, that ReplacePeers is never used
// and that a peer whose desired config did not change is never in a call.
func TestReconcileRandomSequence(t *testing.T) {
	m, wg, _ := attached(t)
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([]Key, 8)
	for i := range pool {
		pool[i] = testKey(t).PublicKey()
	}
	prev := map[Key]Peer{}
	for step := 0; step < 200; step++ {
		var desired []Peer
		next := map[Key]Peer{}
		for i, k := range pool {
			if rng.IntN(3) == 0 {
				continue
			}
			p, ok := prev[k]
			if !ok || rng.IntN(4) == 0 {
				p = peer(k, fmt.Sprintf("192.0.2.%d:%d", 1+rng.IntN(3), 51820+i),
					fmt.Sprintf("100.80.%d.%d/32", i, rng.IntN(3)), fmt.Sprintf("fd5e:6d00::%x/128", i+1))
			}
			desired = append(desired, p)
			next[k] = p
		}
		wg.ResetCalls()
		if _, err := m.Reconcile(desired); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		for _, c := range wg.Calls() {
			if c.Config.ReplacePeers {
				t.Fatalf("step %d: ReplacePeers used", step)
			}
			for _, pc := range c.Config.Peers {
				if p, ok := prev[pc.PublicKey]; ok && reflect.DeepEqual(p, next[pc.PublicKey]) {
					t.Fatalf("step %d: unchanged peer touched: %s", step, fmtPeers([]wgtypes.PeerConfig{pc}))
				}
			}
		}
		d, _ := wg.Device(testDev)
		if len(d.Peers) != len(next) {
			t.Fatalf("step %d: %d peers, want %d", step, len(d.Peers), len(next))
		}
		for _, got := range d.Peers {
			w, ok := next[got.PublicKey]
			if !ok || !slices.Equal(normalizePrefixes(prefixesOf(got.AllowedIPs)), normalizePrefixes(w.AllowedIPs)) ||
				addrPortOf(got.Endpoint) != w.Endpoint || got.PersistentKeepaliveInterval != w.Keepalive {
				t.Fatalf("step %d: peer %s = %+v, want %+v", step, got.PublicKey, got, w)
			}
		}
		prev = next
	}
}

func TestStats(t *testing.T) {
	m, wg, _ := attached(t)
	a, b := testKey(t).PublicKey(), testKey(t).PublicKey()
	mustReconcile(t, m, peer(a, "192.0.2.2:51820", "100.80.0.9/32"), peer(b, "192.0.2.3:51820", "100.80.0.10/32"))
	hs := time.Unix(1700000000, 5)
	wg.SetTraffic(testDev, a, hs, 10, 20)
	wg.SetTraffic(testDev, b, time.Unix(0, 0), 0, 0) // the kernel's "never"
	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 {
		t.Fatalf("stats %+v", st)
	}
	byKey := map[Key]PeerStats{st[0].PublicKey: st[0], st[1].PublicKey: st[1]}
	if s := byKey[a]; !s.LastHandshake.Equal(hs) || s.RxBytes != 10 || s.TxBytes != 20 || s.Endpoint != ap("192.0.2.2:51820") {
		t.Fatalf("stats of a: %+v", s)
	}
	if s := byKey[b]; !s.LastHandshake.IsZero() {
		t.Fatalf("never-handshaken peer has handshake %v", s.LastHandshake)
	}
	if string(st[0].PublicKey[:]) > string(st[1].PublicKey[:]) {
		t.Fatal("stats not ordered by key")
	}
}

func TestReconcileConcurrentWithStats(t *testing.T) {
	m, _, _ := attached(t)
	a := testKey(t).PublicKey()
	var wgrp sync.WaitGroup
	for i := 0; i < 4; i++ {
		wgrp.Add(2)
		go func() {
			defer wgrp.Done()
			for j := 0; j < 50; j++ {
				if _, err := m.Reconcile([]Peer{peer(a, fmt.Sprintf("192.0.2.%d:1", 1+j%5), "100.80.0.9/32")}); err != nil {
					t.Error(err)
				}
			}
		}()
		go func() {
			defer wgrp.Done()
			for j := 0; j < 50; j++ {
				if _, err := m.Stats(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wgrp.Wait()
}

func TestAttachedMeshLifecycle(t *testing.T) {
	wg := meshtest.NewWireGuard()
	if _, err := Attach("nope", wg, nil); err == nil {
		t.Fatal("Attach to a missing device succeeded")
	}
	wg.AddDevice(testDev, testKey(t), 1)
	m, err := Attach(testDev, wg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != testDev || m.Backend() != BackendUserspace {
		t.Fatalf("name %q backend %q", m.Name(), m.Backend())
	}
	if err := m.Up(); !errors.Is(err, ErrNoLink) {
		t.Fatalf("Up on attached mesh: %v", err)
	}
	if err := m.SetAddress4(pfx("100.80.0.1/16")); !errors.Is(err, ErrNoLink) {
		t.Fatalf("SetAddress4 on attached mesh: %v", err)
	}
	if err := m.Close(); err != nil || !wg.Closed() {
		t.Fatalf("Close: %v, client closed %v", err, wg.Closed())
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := m.Reconcile(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reconcile after Close: %v", err)
	}
	if _, err := m.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stats after Close: %v", err)
	}
}

// A peer may be added idle and get its keepalive later: the change is an
// update of the keepalive alone, so the session it may have is kept.
func TestReconcileKeepaliveLater(t *testing.T) {
	m, wg, _ := attached(t)
	a := testKey(t).PublicKey()
	idle := peer(a, "192.0.2.2:51820", "100.80.0.9/32")
	idle.Keepalive = 0
	mustReconcile(t, m, idle)
	equalPeers(t, oneCall(t, wg), []wgtypes.PeerConfig{{
		PublicKey: a, Endpoint: udp("192.0.2.2:51820"), PersistentKeepaliveInterval: ka(0),
		ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{ipn("100.80.0.9/32")},
	}})
	wg.ResetCalls()
	if res := mustReconcile(t, m, idle); res != (ReconcileResult{}) || len(wg.Calls()) != 0 {
		t.Fatalf("unchanged idle peer touched: %+v", res)
	}
	res := mustReconcile(t, m, peer(a, "192.0.2.2:51820", "100.80.0.9/32"))
	if res != (ReconcileResult{Updated: 1}) {
		t.Fatalf("result %+v", res)
	}
	equalPeers(t, oneCall(t, wg), []wgtypes.PeerConfig{{PublicKey: a, UpdateOnly: true, PersistentKeepaliveInterval: ka(Keepalive)}})
}
