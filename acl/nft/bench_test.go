package nft

import (
	"runtime"
	"testing"

	"github.com/segmesh/segmesh/acl"
)

// The kernel benchmarks run in a throwaway network namespace (root).
// BenchmarkApplyFirst10000/kernel and BenchmarkApplyOneJoin/kernel are rows
// 7b and 7c of BENCHMARKS.md, BenchmarkApply100000 row 7h,
// BenchmarkTableElements10000 row 7i.

// benchFirst times the first Apply of e into a fresh table.
func benchFirst(b *testing.B, n, ids int) {
	_, f := installedFirewall(b)
	e := meshState(n, ids)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if err := f.Remove(); err != nil {
			b.Fatal(err)
		}
		if err := f.Install(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := f.Apply(e); err != nil {
			b.Fatal(err)
		}
	}
}

// benchJoin times a peer joining into an existing identity (and, every
// other iteration, leaving again) among n peers.
func benchJoin(b *testing.B, n, ids int) {
	_, f := installedFirewall(b)
	e := meshState(n, ids)
	j := joined(e, n, 3)
	if err := f.Apply(e); err != nil {
		b.Fatal(err)
	}
	settle(b, f, e, j)
	b.ResetTimer()
	for i := range b.N {
		next := j
		if i%2 == 1 {
			next = e
		}
		if err := f.Apply(next); err != nil {
			b.Fatal(err)
		}
		if s := f.last; s.SourceAdds[0]+s.SourceDels[0] != 1 || s.SourceAdds[1]+s.SourceDels[1] != 1 || s.IdentitiesNew+s.IdentitiesRewritten+s.IdentitiesDeleted != 0 {
			b.Fatalf("join/leave touched %+v", s)
		}
	}
}

// benchTagChange times one peer moving between two existing identities.
func benchTagChange(b *testing.B, n, ids int) {
	_, f := installedFirewall(b)
	e := meshState(n, ids)
	moved := meshState(n, ids)
	moved.Sources[0].ID, moved.Sources[n].ID = 2, 2 // peer 0 (both families): identity 1 -> 2
	if err := f.Apply(e); err != nil {
		b.Fatal(err)
	}
	settle(b, f, e, moved)
	b.ResetTimer()
	for i := range b.N {
		next := moved
		if i%2 == 1 {
			next = e
		}
		if err := f.Apply(next); err != nil {
			b.Fatal(err)
		}
		if s := f.last; s.SourceAdds != [2]int{1, 1} || s.SourceDels != [2]int{1, 1} {
			b.Fatalf("tag change touched %+v", s)
		}
	}
}

// settle brings the measurement of small changes to a steady state after
// the large first Apply: its garbage collected, and a few untimed
// alternations (the kernel grows the new sets' hash tables in a worker
// after the first batch; the first small batches meet that work).
func settle(b *testing.B, f *Firewall, states ...acl.Enforced) {
	b.Helper()
	runtime.GC()
	for i := range 4 {
		if err := f.Apply(states[(i+1)%len(states)]); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
}

// 10,000 peers × 20 rules: every peer in one of 5 identities of 20 ports.
func BenchmarkApplyFirst10000(b *testing.B) {
	b.Run("kernel", func(b *testing.B) { benchFirst(b, 10000, 5) })
}

func BenchmarkApplyOneJoin(b *testing.B) {
	b.Run("kernel", func(b *testing.B) { benchJoin(b, 10000, 5) })
}

// 100,000 peers in 50 identities × 20 ports.
func BenchmarkApply100000(b *testing.B) {
	b.Run("first/kernel", func(b *testing.B) { benchFirst(b, 100000, 50) })
	b.Run("join/kernel", func(b *testing.B) { benchJoin(b, 100000, 50) })
	b.Run("tagchange/kernel", func(b *testing.B) { benchTagChange(b, 100000, 50) })
}
