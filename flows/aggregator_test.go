package flows

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func pkt(src, dst string, proto uint8, port uint16, at time.Duration) Packet {
	return Packet{Src: mustAddr(src), Dst: mustAddr(dst), Proto: proto, Port: port, Time: t0.Add(at)}
}

func testResolver(m map[string]Peer) Resolver {
	return func(src netip.Addr) (Peer, bool) {
		p, ok := m[src.String()]
		return p, ok
	}
}

func TestAggregatorCounts(t *testing.T) {
	peers := map[string]Peer{"100.80.1.2": {Name: "web-1", Key: "KEYweb", Segments: []string{"web"}}}
	verdict := api.VerdictDenied
	a := NewAggregator(16, testResolver(peers), func() []string { return []string{"db"} }, func() string { return verdict })

	f := a.Add(pkt("100.80.1.2", "100.80.3.7", 6, 5432, 0))
	want := api.Flow{SrcName: "web-1", SrcKey: "KEYweb", SrcAddr: "100.80.1.2", SrcSegments: []string{"web"},
		DstAddr: "100.80.3.7", DstSegments: []string{"db"}, Proto: "tcp", Port: 5432, Verdict: "denied",
		Count: 1, FirstSeen: t0, LastSeen: t0}
	assertFlow(t, f, want)

	f = a.Add(pkt("100.80.1.2", "100.80.3.7", 6, 5432, 3*time.Second))
	want.Count, want.LastSeen = 2, t0.Add(3*time.Second)
	assertFlow(t, f, want)

	// An older timestamp counts but moves neither end backwards... except FirstSeen.
	f = a.Add(pkt("100.80.1.2", "100.80.3.7", 6, 5432, 2*time.Second))
	want.Count = 3
	assertFlow(t, f, want)

	// Another port, protocol, destination or verdict is another aggregate.
	a.Add(pkt("100.80.1.2", "100.80.3.7", 6, 5433, 4*time.Second))
	a.Add(pkt("100.80.1.2", "100.80.3.7", 17, 5432, 5*time.Second))
	a.Add(pkt("100.80.1.2", "fd5e:6d00::7", 6, 5432, 6*time.Second))
	verdict = api.VerdictAudited
	g := a.Add(pkt("100.80.1.2", "100.80.3.7", 6, 5432, 7*time.Second))
	if g.Count != 1 || g.Verdict != "audited" {
		t.Fatalf("audited flow = %+v, want a new aggregate", g)
	}
	if n := a.Len(); n != 5 {
		t.Fatalf("Len = %d, want 5", n)
	}

	// Unknown source: empty peer fields; ICMP: port 0 whatever the packet says.
	u := a.Add(Packet{Src: mustAddr("100.80.9.9"), Dst: mustAddr("100.80.3.7"), Proto: 1, Port: 99, ICMPType: 8, Time: t0})
	if u.SrcName != "" || u.SrcKey != "" || len(u.SrcSegments) != 0 || u.SrcSegments == nil || u.Proto != "icmp" || u.Port != 0 {
		t.Fatalf("unknown-source icmp flow = %+v", u)
	}
}

func TestAggregatorResolvesAtAdd(t *testing.T) {
	peers := map[string]Peer{"100.80.1.2": {Name: "web-1", Key: "K", Segments: []string{"web"}}}
	var mu sync.Mutex
	resolve := func(src netip.Addr) (Peer, bool) {
		mu.Lock()
		defer mu.Unlock()
		p, ok := peers[src.String()]
		return p, ok
	}
	a := NewAggregator(4, resolve, nil, nil)
	a.Add(pkt("100.80.1.2", "100.80.3.7", 6, 1, 0))
	mu.Lock()
	peers["100.80.1.2"] = Peer{Name: "web-1", Key: "K", Segments: []string{"web", "canary"}}
	mu.Unlock()
	f := a.Add(pkt("100.80.1.2", "100.80.3.7", 6, 1, time.Second))
	if !slices.Equal(f.SrcSegments, []string{"web", "canary"}) || f.Verdict != api.VerdictDenied || f.Count != 2 {
		t.Fatalf("flow after tag change = %+v", f)
	}
	mu.Lock()
	delete(peers, "100.80.1.2")
	mu.Unlock()
	f = a.Add(pkt("100.80.1.2", "100.80.3.7", 6, 1, 2*time.Second))
	if f.SrcName != "" || f.SrcKey != "" || len(f.SrcSegments) != 0 {
		t.Fatalf("flow after the peer left = %+v", f)
	}
}

func TestAggregatorSnapshotNewestFirstAndCopies(t *testing.T) {
	segs := []string{"web"}
	a := NewAggregator(16, func(netip.Addr) (Peer, bool) { return Peer{Name: "n", Segments: segs}, true }, nil, nil)
	a.Add(pkt("100.80.0.1", "100.80.3.7", 6, 1, 5*time.Second))
	a.Add(pkt("100.80.0.2", "100.80.3.7", 6, 1, 9*time.Second))
	a.Add(pkt("100.80.0.3", "100.80.3.7", 6, 1, 1*time.Second)) // added last, seen earliest
	a.Add(pkt("100.80.0.1", "100.80.3.7", 6, 1, 7*time.Second))
	snap := a.Snapshot()
	var got []string
	for _, f := range snap {
		got = append(got, f.SrcAddr)
	}
	if want := []string{"100.80.0.2", "100.80.0.1", "100.80.0.3"}; !slices.Equal(got, want) {
		t.Fatalf("Snapshot order = %v, want %v", got, want)
	}
	// Mutating what callers got must not reach the aggregator.
	snap[0].SrcSegments[0] = "mutated"
	segs[0] = "mutated-by-resolver-owner"
	for _, f := range a.Snapshot() {
		if f.SrcSegments[0] != "web" {
			t.Fatalf("aggregate shares memory with callers: %+v", f)
		}
	}
}

func TestAggregatorEvictsLeastRecentlySeen(t *testing.T) {
	a := NewAggregator(3, nil, nil, nil)
	a.Add(pkt("100.80.0.1", "100.80.3.7", 6, 1, 1*time.Second))
	a.Add(pkt("100.80.0.2", "100.80.3.7", 6, 1, 2*time.Second))
	a.Add(pkt("100.80.0.3", "100.80.3.7", 6, 1, 3*time.Second))
	a.Add(pkt("100.80.0.1", "100.80.3.7", 6, 1, 4*time.Second)) // .1 is fresh again
	a.Add(pkt("100.80.0.4", "100.80.3.7", 6, 1, 5*time.Second)) // evicts .2
	var got []string
	for _, f := range a.Snapshot() {
		got = append(got, f.SrcAddr)
	}
	if want := []string{"100.80.0.4", "100.80.0.1", "100.80.0.3"}; !slices.Equal(got, want) {
		t.Fatalf("after eviction = %v, want %v", got, want)
	}
	if f := a.Add(pkt("100.80.0.2", "100.80.3.7", 6, 1, 6*time.Second)); f.Count != 1 || !f.FirstSeen.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("evicted aggregate came back as %+v, want a fresh one", f)
	}
	if n := a.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
}

func TestAggregatorSubscribers(t *testing.T) {
	a := NewAggregator(8, nil, nil, nil)
	fast, stopFast := a.Subscribe(16)
	slow, stopSlow := a.Subscribe(1)
	defer stopSlow()
	for i := range 5 {
		a.Add(pkt("100.80.0.1", "100.80.3.7", 17, 53, time.Duration(i)*time.Second))
	}
	for i := range 5 {
		f := <-fast
		if f.Count != uint64(i+1) {
			t.Fatalf("update %d: count %d", i, f.Count)
		}
	}
	// The slow one got the first update only; Add did not block on it.
	if f := <-slow; f.Count != 1 {
		t.Fatalf("slow subscriber got count %d, want 1", f.Count)
	}
	select {
	case f := <-slow:
		t.Fatalf("slow subscriber got a second update %+v", f)
	default:
	}
	stopFast()
	stopFast() // idempotent
	if _, ok := <-fast; ok {
		t.Fatal("channel open after unsubscribe")
	}
	a.Add(pkt("100.80.0.1", "100.80.3.7", 17, 53, 9*time.Second)) // no send on the closed channel
	if f := <-slow; f.Count != 6 {
		t.Fatalf("slow subscriber after draining got count %d, want 6", f.Count)
	}
}

func TestAggregatorConcurrent(t *testing.T) {
	a := NewAggregator(64, testResolver(nil), func() []string { return []string{"db"} }, nil)
	sub, stop := a.Subscribe(8)
	var wg sync.WaitGroup
	done := make(chan struct{})
	go func() { // a subscriber that drains slowly
		defer close(done)
		for range sub {
			runtime.Gosched()
		}
	}()
	const workers, per = 8, 2000
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				a.Add(pkt(fmt.Sprintf("100.80.%d.%d", w, i%100), "100.80.3.7", 6, 443, time.Duration(i)))
				if i%500 == 0 {
					_ = a.Snapshot()
				}
			}
		})
	}
	wg.Wait()
	stop()
	<-done
	snap := a.Snapshot()
	if len(snap) != 64 {
		t.Fatalf("len(Snapshot) = %d, want 64 (capacity)", len(snap))
	}
	// The total count of the kept aggregates cannot exceed what was added.
	var total uint64
	for _, f := range snap {
		total += f.Count
	}
	if total == 0 || total > workers*per {
		t.Fatalf("total count %d", total)
	}
}

// TestAggregatorFloodBounded adds a million packets from 100k sources: the
// aggregator keeps its capacity and its heap does not grow with the flood.
func TestAggregatorFloodBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test in -short mode")
	}
	const capacity, sources, adds = 1000, 100_000, 1_000_000
	a := NewAggregator(capacity, func(netip.Addr) (Peer, bool) {
		return Peer{Name: "peer", Key: "key", Segments: []string{"web", "app"}}, true
	}, func() []string { return []string{"db"} }, nil)
	srcs := make([]Packet, sources)
	for i := range srcs {
		srcs[i] = Packet{Src: netip.AddrFrom4([4]byte{100, 80, byte(i >> 8), byte(i)}), Dst: mustAddr("100.80.255.1"), Proto: 6, Port: uint16(i % 7)}
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	// Warm up: fill and churn once, so the map has its steady-state size.
	for i := range 3 * capacity {
		a.Add(srcs[i%sources])
	}
	before := heap()
	for i := range adds {
		p := srcs[(i*7919)%sources]
		p.Time = t0.Add(time.Duration(i))
		a.Add(p)
	}
	after := heap()
	runtime.KeepAlive(srcs) // part of both measurements
	if n := a.Len(); n != capacity {
		t.Fatalf("Len = %d after the flood, want %d", n, capacity)
	}
	if n := len(a.Snapshot()); n != capacity {
		t.Fatalf("len(Snapshot) = %d, want %d", n, capacity)
	}
	// 100k retained aggregates would be tens of MB; allow 2 MiB of noise.
	if after > before && after-before > 2<<20 {
		t.Fatalf("heap grew by %d bytes over the flood (before %d, after %d)", after-before, before, after)
	}
	t.Logf("heap before %d, after %d", before, after)
}

// BenchmarkAggregatorAdd measures Add on existing aggregates (hit) and on a
// cycle of sources larger than the capacity, where every Add evicts (miss).
func BenchmarkAggregatorAdd(b *testing.B) {
	for _, bc := range []struct {
		name    string
		sources int
	}{{"hit", 1000}, {"miss", 10_000}} {
		b.Run(bc.name, func(b *testing.B) {
			a := NewAggregator(4096, func(netip.Addr) (Peer, bool) {
				return Peer{Name: "peer", Key: "key", Segments: []string{"web"}}, true
			}, func() []string { return []string{"db"} }, func() string { return api.VerdictDenied })
			srcs := make([]Packet, bc.sources)
			for i := range srcs {
				srcs[i] = Packet{Src: netip.AddrFrom4([4]byte{100, 80, byte(i >> 8), byte(i)}), Dst: mustAddr("100.80.255.1"), Proto: 6, Port: 443, Time: t0}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				a.Add(srcs[i%len(srcs)])
				i++
			}
		})
	}
}

func assertFlow(t *testing.T, got, want api.Flow) {
	t.Helper()
	if got.SrcName != want.SrcName || got.SrcKey != want.SrcKey || got.SrcAddr != want.SrcAddr ||
		!slices.Equal(got.SrcSegments, want.SrcSegments) || got.DstAddr != want.DstAddr ||
		!slices.Equal(got.DstSegments, want.DstSegments) || got.Proto != want.Proto || got.Port != want.Port ||
		got.Verdict != want.Verdict || got.Count != want.Count || !got.FirstSeen.Equal(want.FirstSeen) ||
		!got.LastSeen.Equal(want.LastSeen) {
		t.Fatalf("flow = %+v\nwant   %+v", got, want)
	}
}

// An egress denial names the peer as destination, the local workload's
// segments as source and what is known of the sending process; it is an
// aggregate of its own next to an ingress one of the same addresses.
func TestAggregatorEgress(t *testing.T) {
	local, peer := netip.MustParseAddr("100.80.0.1"), netip.MustParseAddr("100.80.0.2")
	a := NewAggregator(8, func(x netip.Addr) (Peer, bool) {
		if x == peer {
			return Peer{Name: "db-1", Key: "K", Segments: []string{"db"}}, true
		}
		return Peer{}, false
	}, func() []string { return []string{"app"} }, nil)
	a.SetLocalSegments(func(w string) []string {
		if w == "cron" {
			return []string{"app", "cron"}
		}
		return []string{"app"}
	})
	f := a.Add(Packet{Src: local, Dst: peer, Proto: ProtoTCP, Port: 5432, Out: true, Workload: "cron",
		UID: 1000, HasUID: true, PID: 42, Command: "psql", Cgroup: "/system.slice/cron.service"})
	if f.Direction != "out" || f.DstName != "db-1" || f.DstKey != "K" || f.SrcName != "" || f.Workload != "cron" ||
		!slices.Equal(f.SrcSegments, []string{"app", "cron"}) || !slices.Equal(f.DstSegments, []string{"db"}) ||
		f.UID == nil || *f.UID != 1000 || f.PID != 42 || f.Command != "psql" || f.Cgroup != "/system.slice/cron.service" {
		t.Fatalf("egress flow %+v", f)
	}
	// The same packet without process details keeps those found before.
	f = a.Add(Packet{Src: local, Dst: peer, Proto: ProtoTCP, Port: 5432, Out: true, Workload: "cron"})
	if f.Count != 2 || f.PID != 42 {
		t.Fatalf("second egress packet %+v", f)
	}
	in := a.Add(Packet{Src: peer, Dst: local, Proto: ProtoTCP, Port: 5432})
	if in.Direction != "in" || in.SrcName != "db-1" || a.Len() != 2 {
		t.Fatalf("ingress flow %+v, %d aggregates", in, a.Len())
	}
}
