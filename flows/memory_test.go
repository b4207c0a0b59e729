package flows

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// Heap held by the aggregates at their bound (issue 18, row 11d: ≤ 8 MB for
// the allowed ones at DefaultAllowedCapacity).

// memPeers is a fleet of realistic peers: names, base64 WireGuard keys,
// two segments each, IPv4 and IPv6 overlay addresses.
type memPeers struct {
	byAddr map[netip.Addr]Peer
	addrs  []netip.Addr
}

func newMemPeers(n int) *memPeers {
	p := &memPeers{byAddr: map[netip.Addr]Peer{}}
	roles := []string{"web", "app", "db", "cache", "queue"}
	for i := range n {
		sum := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		role := roles[i%len(roles)]
		peer := Peer{Name: fmt.Sprintf("%s-%d", role, i), Key: base64.StdEncoding.EncodeToString(sum[:]),
			Segments: []string{role, "env-prod"}}
		a4 := netip.AddrFrom4([4]byte{100, 80, byte(i >> 8), byte(i)})
		a6 := netip.AddrFrom16([16]byte{0xfd, 0x53, 0x4d, 0x42, 12: sum[0], sum[1], sum[2], sum[3]})
		p.byAddr[a4], p.byAddr[a6] = peer, peer
		p.addrs = append(p.addrs, a4, a6)
	}
	return p
}

func (p *memPeers) resolve(a netip.Addr) (Peer, bool) {
	peer, ok := p.byAddr[a]
	return peer, ok
}

// fillAllowed fills a new Allowed of capacity n with n distinct aggregates
// (sources of the peers, both families, TCP and UDP ports), in readings of
// 1,024 entries a second as the daemon's reader makes them, and returns it.
// The peers are the caller's (the daemon's peer index exists anyway): not
// counted as the aggregates' heap.
func fillAllowed(n int, peers *memPeers) *Allowed {
	self4, self6 := netip.MustParseAddr("100.80.255.1"), netip.MustParseAddr("fd53:4d42::1")
	a := NewAllowed(n, peers.resolve, func(src netip.Addr) (netip.Addr, []string) {
		if src.Is6() {
			return self6, []string{"db", "env-prod"}
		}
		return self4, []string{"db", "env-prod"}
	})
	t0 := time.Unix(1_800_000_000, 0)
	var rs []Reading
	for i := range n {
		proto := ProtoTCP
		if i%4 == 3 {
			proto = ProtoUDP
		}
		rs = append(rs, Reading{Src: peers.addrs[i%len(peers.addrs)], Proto: proto, Port: uint16(1000 + i/len(peers.addrs)),
			Packets: uint64(10 + i%1000), Bytes: uint64(1500 * (10 + i%1000)), Connections: uint64(1 + i%7)})
		if len(rs) == 1024 || i == n-1 {
			a.Observe(t0.Add(time.Duration(i)*time.Millisecond), rs)
			rs = rs[:0]
		}
	}
	return a
}

// fillAggregator fills a new Aggregator of capacity n with n distinct
// denied aggregates from the same fleet.
func fillAggregator(n int, peers *memPeers) *Aggregator {
	dst := netip.MustParseAddr("100.80.255.1")
	a := NewAggregator(n, peers.resolve, func() []string { return []string{"db", "env-prod"} }, nil)
	t0 := time.Unix(1_800_000_000, 0)
	for i := range n {
		src := peers.addrs[2*(i%200)] // IPv4: Dst must be the same family
		a.Add(Packet{Src: src, Dst: dst, Proto: ProtoTCP, Port: uint16(1000 + i/200), Time: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	return a
}

// heapOf is the live heap that make allocates and keeps (GC before and
// after, with the result still referenced).
func heapOf(make func() any) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := make()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return after.HeapAlloc - before.HeapAlloc
}

// allowedHeapLimit is row 11d's target.
const allowedHeapLimit = 8 << 20

func TestAllowedHeapAtBound(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 16,384 aggregates")
	}
	// 200 peers (82 ports each), and the worst case: every aggregate from
	// a source of its own (8,192 peers, both families).
	for _, npeers := range []int{200, DefaultAllowedCapacity / 2} {
		var a *Allowed
		peers := newMemPeers(npeers)
		got := heapOf(func() any { a = fillAllowed(DefaultAllowedCapacity, peers); return a })
		if a.Len() != DefaultAllowedCapacity {
			t.Fatalf("filled %d aggregates, want %d", a.Len(), DefaultAllowedCapacity)
		}
		t.Logf("%d allowed aggregates from %d peers: %d bytes of heap (%d per aggregate)", a.Len(), npeers, got, got/uint64(a.Len()))
		if got > allowedHeapLimit {
			t.Errorf("%d allowed aggregates from %d peers hold %d bytes of heap, want ≤ %d", a.Len(), npeers, got, allowedHeapLimit)
		}
	}
}

// BenchmarkAllowedHeap reports the heap held by DefaultAllowedCapacity
// allowed aggregates (heap-bytes, heap-bytes/aggregate): from 200 peers,
// and from as many sources as aggregates (8,192 peers, both families).
func BenchmarkAllowedHeap(b *testing.B) {
	for _, c := range []struct {
		name   string
		npeers int
	}{{"peers=200", 200}, {"sources=16384", DefaultAllowedCapacity / 2}} {
		b.Run(c.name, func(b *testing.B) {
			var got uint64
			peers := newMemPeers(c.npeers)
			for range b.N {
				got = heapOf(func() any { return fillAllowed(DefaultAllowedCapacity, peers) })
			}
			b.ReportMetric(float64(got), "heap-bytes")
			b.ReportMetric(float64(got)/DefaultAllowedCapacity, "heap-bytes/aggregate")
		})
	}
}

// BenchmarkAggregatorHeap reports the heap held by the daemon's denied
// aggregates at their bound (node's flowCapacity, DefaultCapacity).
func BenchmarkAggregatorHeap(b *testing.B) {
	var got uint64
	peers := newMemPeers(200)
	for range b.N {
		got = heapOf(func() any { return fillAggregator(DefaultCapacity, peers) })
	}
	b.ReportMetric(float64(got), "heap-bytes")
	b.ReportMetric(float64(got)/DefaultCapacity, "heap-bytes/aggregate")
}
