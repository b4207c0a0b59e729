package acl

import (
	"net/netip"
	"testing"

	"github.com/google/nftables"
)

// benchDesired: n peers, each allowed 9 port ranges over IPv4 and IPv6 and
// ICMP on both (20 elements per peer), sorted like the compiler's output.
func benchDesired(n int) Desired {
	d := Desired{Local: []netip.Addr{self4, self6}}
	for _, addr := range []func(int) netip.Addr{peer4, peer6} {
		for i := range n {
			for j := range 9 {
				lo := uint16(1000 + 100*j)
				d.Ports = append(d.Ports, PortElement{addr(i), ProtoTCP, lo, lo + 10})
			}
			d.ICMP = append(d.ICMP, addr(i))
		}
	}
	return d
}

// benchFirewalls runs fn against the fake kernel and, as root, against the
// kernel of a throwaway network namespace.
func benchFirewalls(b *testing.B, fn func(b *testing.B, newFW func() *Firewall)) {
	b.Run("fake", func(b *testing.B) {
		k := newFakeKernel(b)
		k.light = true
		fn(b, func() *Firewall {
			f, err := NewFirewall(testConfig(), nil, nftables.WithTestDial(k.dial))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = f.Close() })
			return f
		})
	})
	b.Run("kernel", func(b *testing.B) {
		requireRoot(b)
		ns := newTestNS(b)
		fn(b, func() *Firewall {
			f, err := NewFirewall(testConfig(), nil, nftables.WithNetNSFd(int(ns.h)))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = f.Close() })
			return f
		})
	})
}

// BenchmarkApplyFirst10000 applies 10,000 peers x 20 elements to an empty
// table.
func BenchmarkApplyFirst10000(b *testing.B) {
	d := benchDesired(10000)
	benchFirewalls(b, func(b *testing.B, newFW func() *Firewall) {
		f := newFW()
		for b.Loop() {
			b.StopTimer()
			if err := f.Remove(); err != nil {
				b.Fatal(err)
			}
			if err := f.Install(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := f.Apply(d); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(f.last.Adds), "elements")
	})
}

// BenchmarkApplyOneJoin applies one peer joining among 10,000 (its 20
// elements); the following leave is not timed.
func BenchmarkApplyOneJoin(b *testing.B) {
	base := benchDesired(10000)
	joined := benchDesired(10001)
	benchFirewalls(b, func(b *testing.B, newFW func() *Firewall) {
		f := newFW()
		if err := f.Install(); err != nil {
			b.Fatal(err)
		}
		if err := f.Apply(base); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := f.Apply(joined); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if f.last != (batchStats{Adds: 20}) {
				b.Fatalf("join batch %+v", f.last)
			}
			if err := f.Apply(base); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}
