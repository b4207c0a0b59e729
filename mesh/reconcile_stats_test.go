package mesh

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmesh/segmesh/mesh/meshtest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// countingWG counts device reads.
type countingWG struct {
	*meshtest.WireGuard
	reads atomic.Int32
}

func (c *countingWG) Device(name string) (*wgtypes.Device, error) {
	c.reads.Add(1)
	return c.WireGuard.Device(name)
}

// ReconcileStats reads the device once and reports the desired peers'
// statistics: kept peers with their counters, added peers at zero, removed
// peers left out, ordered by key like Stats.
func TestReconcileStatsOneRead(t *testing.T) {
	fake := meshtest.NewWireGuard()
	fake.AddDevice(testDev, testKey(t), 51820)
	wg := &countingWG{WireGuard: fake}
	m, err := Attach(testDev, wg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, b, c := testKey(t).PublicKey(), testKey(t).PublicKey(), testKey(t).PublicKey()
	if _, err := m.Reconcile([]Peer{peer(a, "192.0.2.2:51820", "100.80.0.9/32"), peer(b, "192.0.2.3:51820", "100.80.0.10/32")}); err != nil {
		t.Fatal(err)
	}
	hs := time.Unix(1_700_000_000, 0)
	fake.SetTraffic(testDev, a, hs, 100, 200)
	wg.reads.Store(0)

	res, st, err := m.ReconcileStats([]Peer{peer(a, "192.0.2.2:51820", "100.80.0.9/32"), peer(c, "192.0.2.4:51820", "100.80.0.11/32")})
	if err != nil {
		t.Fatal(err)
	}
	if n := wg.reads.Load(); n != 1 {
		t.Fatalf("%d device reads, want 1", n)
	}
	if res != (ReconcileResult{Added: 1, Removed: 1}) {
		t.Fatalf("result %+v", res)
	}
	if len(st) != 2 {
		t.Fatalf("stats %+v, want peers a and c", st)
	}
	if !slices.IsSortedFunc(st, func(x, y PeerStats) int { return slices.Compare(x.PublicKey[:], y.PublicKey[:]) }) {
		t.Fatalf("stats not ordered by key: %+v", st)
	}
	for _, s := range st {
		switch s.PublicKey {
		case a:
			if s.RxBytes != 100 || s.TxBytes != 200 || !s.LastHandshake.Equal(hs) || s.Endpoint != ap("192.0.2.2:51820") {
				t.Fatalf("kept peer: %+v", s)
			}
		case c:
			if s.RxBytes != 0 || s.TxBytes != 0 || !s.LastHandshake.IsZero() || s.Endpoint != ap("192.0.2.4:51820") {
				t.Fatalf("added peer: %+v", s)
			}
		default:
			t.Fatalf("removed or unknown peer in stats: %+v", s)
		}
	}
	// The device agrees with what was reported.
	full, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(full) != 2 {
		t.Fatalf("device peers %+v", full)
	}

	fake.FailDevice(errors.New("boom"))
	if _, st, err := m.ReconcileStats(nil); err == nil || st != nil {
		t.Fatalf("a failed read must fail without stats: %v %v", st, err)
	}
}
