package nft

import (
	"testing"

	"github.com/segmesh/segmesh/acl"
)

// oldLayoutElements is how many set elements the previous release's layout
// (per source `saddr . l4proto . dport`, icmp and any sets) holds for e.
func oldLayoutElements(e acl.Enforced) int {
	per := map[uint32]int{}
	for _, id := range e.Identities {
		switch {
		case id.Any:
			per[id.ID] = 1
		default:
			per[id.ID] = len(id.TCP) + len(id.UDP)
			if id.ICMP {
				per[id.ID]++
			}
		}
	}
	n := len(e.Local)
	for _, s := range e.Sources {
		n += per[s.ID]
	}
	return n
}

// tableElements counts the elements of table inet segmesh as nft lists
// them (sets and maps).
func tableElements(t testing.TB, ns *testNS) int {
	o := listJSON(t, ns, "table", "inet", "segmesh")
	n := 0
	for _, c := range o.elems {
		n += c
	}
	return n
}

// TestRootElementCount10000 is row 7i's acceptance: at 10,000 peers × 20
// ports the table holds at least 10 times fewer elements than the
// previous layout did.
func TestRootElementCount10000(t *testing.T) {
	requireRoot(t)
	ns := newTestNS(t)
	f := ns.firewall(testConfig())
	if err := f.Install(); err != nil {
		t.Fatal(err)
	}
	e := meshState(10000, 5)
	if err := f.Apply(e); err != nil {
		t.Fatal(err)
	}
	got, old := tableElements(t, ns), oldLayoutElements(e)
	t.Logf("elements: %d (old layout: %d, %.1fx fewer)", got, old, float64(old)/float64(got))
	if got != 2*10000+5*20+2 {
		t.Errorf("%d elements, want %d", got, 2*10000+5*20+2)
	}
	if got*10 > old {
		t.Errorf("%d elements, old layout %d: fewer than 10x less", got, old)
	}
}

// BenchmarkTableElements10000 reports row 7i's figures: the elements of
// the table at 10,000 peers × 20 ports, and those of the old layout.
func BenchmarkTableElements10000(b *testing.B) {
	requireRoot(b)
	ns := newTestNS(b)
	f := ns.firewall(testConfig())
	if err := f.Install(); err != nil {
		b.Fatal(err)
	}
	e := meshState(10000, 5)
	if err := f.Apply(e); err != nil {
		b.Fatal(err)
	}
	got, old := tableElements(b, ns), oldLayoutElements(e)
	for range b.N {
	}
	b.ReportMetric(float64(got), "elements")
	b.ReportMetric(float64(old), "old-elements")
	b.ReportMetric(float64(old)/float64(got), "ratio")
}
