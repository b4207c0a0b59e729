package gossip

import (
	"context"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Hostile input on the gossip port from a sender without the cluster key:
// garbage and oversized datagrams, garbage streams, streams with a
// plausible header announcing a huge payload, and slowloris streams that
// never complete. Everything must be dropped: no panic (it would kill the
// test binary), the members keep seeing each other, stream handlers end
// within memberlist's TCPTimeout even while the attacker holds its
// connections open, and the heap returns to its baseline.

// countingHandler discards log records and counts those whose message
// contains one of the watched substrings (proof the garbage arrived).
type countingHandler struct {
	watch []string
	n     *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	for _, w := range h.watch {
		if strings.Contains(r.Message, w) {
			h.n.Add(1)
			break
		}
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// memberlist wire constants (protocol values, see memberlist net.go/label.go).
const (
	mlHasLabel   = 244
	mlEncrypt    = 10
	mlCompress   = 9
	mlPushPull   = 6
	mlMaxPushBuf = 20 * 1024 * 1024
)

func labelled(label string, rest []byte) []byte {
	return append([]byte{mlHasLabel, byte(len(label))}, append([]byte(label), rest...)...)
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

// streamHandlers counts memberlist goroutines serving an inbound stream.
func streamHandlers() int {
	n := 0
	for _, g := range gossipGoroutines() {
		if strings.Contains(g, "memberlist.(*Memberlist).handleConn") {
			n++
		}
	}
	return n
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestHostileTrafficOnGossipPort(t *testing.T) {
	var dropped atomic.Int64
	nodes := startMesh(t, 2, func(i int, c *Config) {
		if i == 0 { // the target: thousands of drop lines, counted, not printed
			c.Logger = slog.New(countingHandler{n: &dropped, watch: []string{
				"ecrypt", "label", "failed to receive", "unencrypted", "larger than limit", "Failed to",
			}})
		}
	})
	target, peer := nodes[0], nodes[1]
	addr := target.Addr().String()
	label := target.cfg.Label

	waitFor(t, 10*time.Second, "stream handlers of the join to end", func() bool { return streamHandlers() == 0 })
	baseG := runtime.NumGoroutine()
	baseHeap := heapAfterGC()

	const blast = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), blast)
	defer cancel()
	var wg sync.WaitGroup
	var udpSent, streams atomic.Int64
	var peakHeap atomic.Uint64

	// UDP: random small datagrams, 64 KiB ones, and labelled ones that get
	// as far as decryption (right label) or the label check (wrong label).
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			c, err := net.Dial("udp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for i := 0; ctx.Err() == nil; i++ {
				var pkt []byte
				switch i % 8 {
				case 0:
					pkt = randBytes(rng, 65507) // the largest IPv4 UDP payload
				case 1:
					pkt = labelled(label, append([]byte{1}, randBytes(rng, 1+rng.IntN(1400))...))
				case 2:
					pkt = labelled(label, randBytes(rng, 65000))
				case 3:
					pkt = labelled("other-cluster", randBytes(rng, 200))
				case 4:
					pkt = []byte{mlHasLabel, 200, 'x'} // truncated label
				default:
					pkt = randBytes(rng, 1+rng.IntN(1400))
				}
				if _, err := c.Write(pkt); err == nil {
					udpSent.Add(1)
				}
				if i%16 == 0 {
					time.Sleep(time.Millisecond) // a hostile stream of packets, not a bandwidth flood
				}
			}
		}()
	}

	// TCP: one-shot streams of garbage or of plausible headers.
	oneShot := func(rng *rand.Rand) []byte {
		size := make([]byte, 4)
		switch rng.IntN(6) {
		case 0:
			return randBytes(rng, 1+rng.IntN(4096))
		case 1: // encrypted state announcing more than memberlist's limit
			binary.BigEndian.PutUint32(size, 0xffffffff)
			return labelled(label, append([]byte{mlEncrypt}, size...))
		case 2: // just under the limit, 256 KiB delivered, then closed
			binary.BigEndian.PutUint32(size, mlMaxPushBuf-1)
			return labelled(label, append(append([]byte{mlEncrypt}, size...), randBytes(rng, 256<<10)...))
		case 3: // unencrypted push/pull: refused (encryption is verified)
			return labelled(label, append([]byte{mlPushPull}, randBytes(rng, 512)...))
		case 4:
			return labelled(label, append([]byte{mlCompress}, randBytes(rng, 512)...))
		default:
			return labelled("other-cluster", randBytes(rng, 512))
		}
	}
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for ctx.Err() == nil {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					continue
				}
				streams.Add(1)
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = c.Write(oneShot(rng))
				if rng.IntN(2) == 0 { // memberlist may answer an error message
					_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					_, _ = c.Read(make([]byte, 512))
				}
				c.Close()
			}
		}()
	}

	// Slowloris: streams that announce a large payload and trickle it one
	// byte at a time, held open until the test says stop (after the blast).
	stopLoris := make(chan struct{})
	var lorisWG sync.WaitGroup
	var lorisOpen atomic.Int64
	for i := range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		streams.Add(1)
		lorisWG.Add(1)
		lorisOpen.Add(1)
		go func() {
			defer lorisWG.Done()
			defer lorisOpen.Add(-1)
			defer c.Close()
			size := make([]byte, 4)
			binary.BigEndian.PutUint32(size, 1<<20)
			head := labelled(label, append([]byte{mlEncrypt}, size...))
			if i%2 == 0 {
				head = head[:1+i%len(head)] // stall inside the label header
			}
			if _, err := c.Write(head); err != nil {
				return
			}
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stopLoris:
					return
				case <-tick.C:
					if _, err := c.Write([]byte{0x42}); err != nil {
						return // the server gave up on us
					}
				}
			}
		}()
	}

	// Liveness as the peer sees the target during the blast (logged only:
	// a flood may cost probes; what matters is recovery, asserted below).
	var peerNotAlive atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if m, ok := member(peer, target.cfg.NodeName); !ok || m.State != StateAlive {
				peerNotAlive.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	// Heap while under attack (no GC forced: a loose bound on runaway growth).
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peakHeap.Load() {
				peakHeap.Store(ms.HeapAlloc)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	wg.Wait()
	t.Logf("blast: %d datagrams, %d streams, %d drops logged, peak heap %d MiB (baseline %d MiB)",
		udpSent.Load(), streams.Load(), dropped.Load(), peakHeap.Load()>>20, baseHeap>>20)
	if udpSent.Load() < 1000 || streams.Load() < 100 {
		t.Fatalf("the blast did not run: %d datagrams, %d streams", udpSent.Load(), streams.Load())
	}
	if dropped.Load() == 0 {
		t.Fatal("the target logged no dropped packet or stream: did the garbage reach it?")
	}
	if peak := peakHeap.Load(); peak > baseHeap+512<<20 {
		t.Errorf("heap reached %d MiB under attack (baseline %d MiB)", peak>>20, baseHeap>>20)
	}

	// The server cuts the slowloris streams by itself (TCPTimeout: the
	// clients would trickle forever) and its stream handlers end.
	waitFor(t, 5*target.cfg.TCPTimeout+5*time.Second, "the server to cut the slowloris streams", func() bool {
		return lorisOpen.Load() == 0 && streamHandlers() == 0
	})
	close(stopLoris)
	lorisWG.Wait()
	if flaps := peerNotAlive.Load(); flaps > 0 {
		t.Logf("the peer saw the target not alive %d times during the blast (UDP probes lost in the flood)", flaps)
	}

	// Both members alive in each other's view, and gossip still works.
	waitConverged(t, target, peer)
	for _, g := range []*Gossip{target, peer} {
		if n := g.NumMembers(); n != 2 {
			t.Errorf("%s: NumMembers = %d, want 2", g.cfg.NodeName, n)
		}
		if len(g.Members()) != 1 {
			t.Errorf("%s: members %+v: garbage created members", g.cfg.NodeName, g.Members())
		}
	}

	// Goroutines back near the baseline (memberlist's periodic push/pull
	// and probes may have a couple in flight at any moment).
	waitFor(t, 10*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= baseG+4
	})
	// Heap back near the baseline once the garbage is collected.
	var after uint64
	waitFor(t, 10*time.Second, "heap back to the baseline", func() bool {
		after = heapAfterGC()
		return after <= baseHeap+16<<20
	})
	t.Logf("goroutines %d (baseline %d), heap after GC %d KiB (baseline %d KiB)",
		runtime.NumGoroutine(), baseG, after>>10, baseHeap>>10)
}
