package acl

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/google/nftables"
)

// benchDesired: n peers, each allowed 9 port ranges over IPv4 and IPv6 and
// ICMP on both (20 elements per peer), sorted like the compiler's output.
func benchDesired(n int) Desired { return benchDesiredWidth(n, 10) }

// benchDesiredWidth is benchDesired with ranges of width+1 ports (width 0:
// single ports, which go to the exact-port sets).
func benchDesiredWidth(n int, width uint16) Desired {
	d := Desired{Local: []netip.Addr{self4, self6}}
	for _, addr := range []func(int) netip.Addr{peer4, peer6} {
		for i := range n {
			for j := range 9 {
				lo := uint16(1000 + 100*j)
				d.Ports = append(d.Ports, PortElement{addr(i), ProtoTCP, lo, lo + width})
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
			f, err := NewFirewall(testConfig(), nil, nftables.WithNetNSFd(int(ns.Handle)))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = f.Close() })
			return f
		})
	})
}

// BenchmarkApplyFirst10000 applies 10,000 peers x 20 elements (all port
// elements ranges) to an empty table.
func BenchmarkApplyFirst10000(b *testing.B) { benchFirst(b, benchDesired(10000)) }

// BenchmarkApplyFirst10000Exact: the same with single ports (exact-port
// sets).
func BenchmarkApplyFirst10000Exact(b *testing.B) { benchFirst(b, benchDesiredWidth(10000, 0)) }

// BenchmarkApplyFirst5000: 100,000 elements, ranges.
func BenchmarkApplyFirst5000(b *testing.B) { benchFirst(b, benchDesired(5000)) }

// BenchmarkApplyFirst5000Exact: 100,000 elements, single ports.
func BenchmarkApplyFirst5000Exact(b *testing.B) { benchFirst(b, benchDesiredWidth(5000, 0)) }

func benchFirst(b *testing.B, d Desired) {
	benchFirewalls(b, func(b *testing.B, newFW func() *Firewall) {
		f := newFW()
		var m applyMeter
		for b.Loop() {
			b.StopTimer()
			if err := f.Remove(); err != nil {
				b.Fatal(err)
			}
			if err := f.Install(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			m.start()
			if err := f.Apply(d); err != nil {
				b.Fatal(err)
			}
			m.stop(f)
		}
		m.report(b)
		b.ReportMetric(float64(f.last.Adds), "elements")
	})
}

// BenchmarkApplyOneJoin applies one peer joining among 10,000 (its 20
// elements, port elements ranges); the following leave is not timed.
func BenchmarkApplyOneJoin(b *testing.B) { benchJoin(b, 10000, 10, false) }

// BenchmarkApplyOneJoinExact: the same with single ports.
func BenchmarkApplyOneJoinExact(b *testing.B) { benchJoin(b, 10000, 0, false) }

// BenchmarkApplyOneJoin5000: one peer joining among 5,000 (100,000
// elements), ranges.
func BenchmarkApplyOneJoin5000(b *testing.B) { benchJoin(b, 5000, 10, false) }

// BenchmarkApplyOneJoin5000Exact: the same with single ports.
func BenchmarkApplyOneJoin5000Exact(b *testing.B) { benchJoin(b, 5000, 0, false) }

// BenchmarkApplyOneLeave applies one peer of 10,001 leaving (its 20
// elements deleted, port elements ranges); the join before is not timed.
func BenchmarkApplyOneLeave(b *testing.B) { benchJoin(b, 10000, 10, true) }

// BenchmarkApplyOneLeaveExact: the same with single ports.
func BenchmarkApplyOneLeaveExact(b *testing.B) { benchJoin(b, 10000, 0, true) }

// benchJoin times the join of one peer to n (or, with leave, its leave).
func benchJoin(b *testing.B, n int, width uint16, leave bool) {
	base := benchDesiredWidth(n, width)
	joined := benchDesiredWidth(n+1, width)
	benchFirewalls(b, func(b *testing.B, newFW func() *Firewall) {
		f := newFW()
		if err := f.Install(); err != nil {
			b.Fatal(err)
		}
		if err := f.Apply(base); err != nil {
			b.Fatal(err)
		}
		var m applyMeter
		for b.Loop() {
			for _, step := range []struct {
				d     Desired
				timed bool
				want  batchStats
			}{{joined, !leave, batchStats{Adds: 20}}, {base, leave, batchStats{Dels: 20}}} {
				if !step.timed {
					b.StopTimer()
				}
				m.start()
				if err := f.Apply(step.d); err != nil {
					b.Fatal(err)
				}
				if step.timed {
					m.stop(f)
				}
				b.StopTimer()
				if f.last != step.want {
					b.Fatalf("batch %+v, want %+v", f.last, step.want)
				}
				b.StartTimer()
			}
		}
		m.report(b)
	})
}

// applyMeter sums, over the timed Applies, the process's CPU time (user and
// system: Go code, netlink encoding and the kernel's commit, which runs in
// the sending syscall; it excludes waiting for a CPU on a loaded machine)
// and the wall time of the netlink batch alone (Flush).
type applyMeter struct {
	n          int
	cpu, flush time.Duration
	before     time.Duration
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (m *applyMeter) start() { m.before = cpuTime() }

func (m *applyMeter) stop(f *Firewall) {
	m.cpu += cpuTime() - m.before
	m.flush += f.lastFlush
	m.n++
}

func (m *applyMeter) report(b *testing.B) {
	if m.n > 0 {
		b.ReportMetric(float64(m.cpu.Microseconds())/1000/float64(m.n), "cpu-ms/op")
		b.ReportMetric(float64(m.flush.Microseconds())/1000/float64(m.n), "flush-ms/op")
	}
}

// BenchmarkDiffOneJoin is the Go side of one join among 10,000 peers
// (200,000 elements) without netlink and without the port memo (see
// portMemo): a full build of the desired sets and their diff against the
// current ones — what Apply costs for input it cannot compare source by
// source.
func BenchmarkDiffOneJoin(b *testing.B) {
	base, joined := benchDesired(10000), benchDesired(10001)
	var bld elemBuilder
	cur, want := new(elementSet), new(elementSet)
	if err := bld.build(base, cur); err != nil {
		b.Fatal(err)
	}
	var adds, dels []elem
	for b.Loop() {
		if err := bld.build(joined, want); err != nil {
			b.Fatal(err)
		}
		adds, dels = adds[:0], dels[:0]
		for i := range want {
			adds, dels = diffElems(cur[i], want[i], adds, dels)
		}
		if len(adds) != 20 || len(dels) != 0 {
			b.Fatalf("+%d -%d", len(adds), len(dels))
		}
	}
}
