package main

// The simulated gossip cluster of row 6 (and the footprint rows' simulated
// members): real gossip.New nodes in this process on loopback addresses.

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metrics "github.com/hashicorp/go-metrics"

	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// byteSink counts the bytes memberlist reports sending (its own
// memberlist.udp.sent and memberlist.tcp.sent counters, after encryption,
// without UDP/IP headers) and the push/pull exchanges it starts (its
// memberlist.pushPullNode timer), summed over every node of the process.
type byteSink struct {
	metrics.BlackholeSink
	udp, tcp  atomic.Int64
	pushPulls atomic.Int64
}

func (s *byteSink) AddSampleWithLabels(key []string, _ float32, _ []metrics.Label) {
	if len(key) >= 2 && key[len(key)-2] == "memberlist" && key[len(key)-1] == "pushPullNode" {
		s.pushPulls.Add(1)
	}
}

func (s *byteSink) AddSample(key []string, val float32) { s.AddSampleWithLabels(key, val, nil) }

func (s *byteSink) IncrCounterWithLabels(key []string, val float32, _ []metrics.Label) {
	k := strings.Join(key, ".")
	switch {
	case strings.HasSuffix(k, "memberlist.udp.sent"):
		s.udp.Add(int64(val))
	case strings.HasSuffix(k, "memberlist.tcp.sent"):
		s.tcp.Add(int64(val))
	}
}

func (s *byteSink) IncrCounter(key []string, val float32) { s.IncrCounterWithLabels(key, val, nil) }

func (s *byteSink) total() int64 { return s.udp.Load() + s.tcp.Load() }

var installSink = sync.OnceValue(func() *byteSink {
	s := &byteSink{}
	cfg := metrics.DefaultConfig("bench")
	cfg.EnableRuntimeMetrics = false
	cfg.EnableHostname = false
	_, _ = metrics.NewGlobal(cfg, s)
	return s
})

// genuineRecord is a real node record: a fresh WireGuard key, the overlay
// addresses it yields, the given tags.
func genuineRecord(name string, port int, tags map[string]string) (gossip.Record, error) {
	k, err := mesh.GenerateKey()
	if err != nil {
		return gossip.Record{}, err
	}
	pub := k.PublicKey()
	return gossip.Record{
		Format: gossip.RecordFormat, Name: name, PublicKey: pub.String(), ListenPort: port,
		Address4: mesh.Candidate4(netip.MustParsePrefix("100.80.0.0/16"), pub, 0), Claimed: time.Now().UnixNano(),
		Address6: mesh.Address6(netip.MustParsePrefix("fd5e:6d00::/48"), pub), Tags: tags,
	}, nil
}

// docStore is a minimal DocumentHandler: it keeps the newest "bench"
// document (version = its content) and notes when it arrived.
type docStore struct {
	mu      sync.Mutex
	data    []byte
	arrived time.Time
}

func (d *docStore) MergeDocument(kind string, data []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if kind != "bench" || bytes.Compare(data, d.data) <= 0 {
		return false
	}
	d.data, d.arrived = data, time.Now()
	return true
}

func (d *docStore) Documents() map[string][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.data == nil {
		return nil
	}
	return map[string][]byte{"bench": d.data}
}

func (d *docStore) arrival(want []byte) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.arrived, bytes.Equal(d.data, want)
}

// simNode is one simulated gossip member and what it announces.
type simNode struct {
	g    *gossip.Gossip
	rec  gossip.Record
	docs *docStore
}

// startSimNodes starts n gossip nodes on bind addresses from addr(i), port
// from port(i) (0: free), production (LAN) timings, seeded with seeds plus
// the first node, in batches.
func startSimNodes(n int, key []byte, label string, addr func(i int) string, port func(i int) int, listenPort func(i int) int, seeds []string, tags map[string]string) ([]*simNode, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var nodes []*simNode
	for i := 0; i < n; i++ {
		rec, err := genuineRecord(fmt.Sprintf("sim-%d", i), listenPort(i), tags)
		if err != nil {
			return nodes, err
		}
		s := simSeeds(seeds, nodes)
		docs := &docStore{}
		g, err := gossip.New(gossip.Config{
			NodeName: rec.PublicKey, BindAddr: addr(i), BindPort: port(i), Keys: [][]byte{key}, Label: label,
			Seeds: s, Documents: docs, Logger: log,
		}, rec)
		if err != nil {
			return nodes, fmt.Errorf("gossip node %d: %w", i, err)
		}
		g.Start()
		nodes = append(nodes, &simNode{g: g, rec: rec, docs: docs})
		if i%50 == 49 {
			time.Sleep(200 * time.Millisecond) // let joins land in batches
		}
	}
	return nodes, nil
}

// shutdownSim shuts every node down (at once) and waits.
func shutdownSim(nodes []*simNode) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); _ = n.g.Shutdown() }()
	}
	wg.Wait()
}

// simCluster is a set of gossip.New nodes in this process on loopback
// addresses 127.1.x.y: one cluster key and label, memberlist's LAN timings
// but for the probe timing it is given.
type simCluster struct {
	key   []byte
	log   *slog.Logger
	warns *logCounter
	nodes []*simNode
	// probe timing of the failure detector (zero: memberlist's LAN
	// defaults, 1 s and 500 ms); dissemination timings stay the defaults.
	probeInterval, probeTimeout time.Duration
	// compress turns memberlist's LZW compression on (the daemon keeps it
	// off, see gossip.Config.Compress).
	compress bool
}

func newSimCluster(key []byte, probeInterval, probeTimeout time.Duration, compress bool) *simCluster {
	w := newLogCounter()
	return &simCluster{key: key, log: slog.New(w), warns: w, probeInterval: probeInterval, probeTimeout: probeTimeout, compress: compress}
}

// add starts one node seeded with up to seeds random nodes among the first
// from (nodes that have joined: a seed that is itself still joining would
// form an island with it).
func (c *simCluster) add(seeds, from int) error {
	i := len(c.nodes)
	rec, err := genuineRecord(fmt.Sprintf("sim-%d", i), 51820, map[string]string{"role": "sim"})
	if err != nil {
		return err
	}
	var s []string
	from = min(from, len(c.nodes))
	for _, j := range rand.Perm(from)[:min(seeds, from)] {
		s = append(s, c.nodes[j].g.Addr().String())
	}
	docs := &docStore{}
	g, err := gossip.New(gossip.Config{
		NodeName: rec.PublicKey, BindAddr: fmt.Sprintf("127.1.%d.%d", i/200, i%200+1), Keys: [][]byte{c.key},
		Label: "segmesh-bench", Seeds: s, Documents: docs, Logger: c.log,
		ProbeInterval: c.probeInterval, ProbeTimeout: c.probeTimeout, Compress: c.compress,
	}, rec)
	if err != nil {
		return fmt.Errorf("gossip node %d: %w", i, err)
	}
	g.Start()
	c.nodes = append(c.nodes, &simNode{g: g, rec: rec, docs: docs})
	return nil
}

// minMembers is the fewest alive members (self included) any node sees.
func (c *simCluster) minMembers() int {
	m := len(c.nodes)
	for _, s := range c.nodes {
		m = min(m, s.g.NumMembers())
	}
	return m
}

// joined reports whether every node of batch sees another member.
func (c *simCluster) joined(batch []*simNode) bool {
	for _, s := range batch {
		if s.g.NumMembers() < 2 {
			return false
		}
	}
	return true
}

// unseen counts the (node, running node) pairs where the node does not
// see the other alive: alive broadcasts missed, or not arrived yet.
func (c *simCluster) unseen() int {
	u := 0
	for _, s := range c.nodes {
		u += max(0, len(c.nodes)-s.g.NumMembers())
	}
	return u
}

func (c *simCluster) shutdown() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); _ = n.g.Shutdown() }()
	}
	wg.Wait()
}

// stagedStart starts up to n nodes in batches of batch, each node seeded
// with 3 random nodes of earlier batches (the first batch with the first
// node). After each batch it waits, at most perBatch, until the process
// uses less than calm cores (the batch's joins are processed) and, unless
// paced, the running nodes see each other alive but for a few missed alive
// broadcasts (at most 1% of the node count in (node, member) pairs); paced,
// it only waits for every node of the batch to have joined (it sees more
// than itself): the batches' alive broadcasts then spread concurrently
// instead of one batch after the other (a batch of B joins needs about B
// gossip rounds to reach every node, whatever N, since every node sends
// about 12 messages a round and owes each one 12–16 transmissions). A node
// receives each alive broadcast about RetransmitMult × ceil(log10(N+1))
// (12 or 16) times, at random, so it misses one with a probability of about
// e^-12 ≈ 6e-6: a batch of 50 joins among 500 nodes leaves such a gap once
// in a few batches, and it waits for a push/pull exchange to be repaired
// (every 2.5–3 minutes per node at these sizes). It stops adding nodes
// early, and says why, when the simulation no longer keeps up: a batch did
// not settle within perBatch, the failure detector raised maxAlarms false
// alarms during a batch, the process's RSS passed maxRSS, or deadline
// passed.
func (c *simCluster) stagedStart(n, batch int, paced bool, calm float64, perBatch time.Duration, maxAlarms int, maxRSS int64, deadline time.Time, progress func(string), afterBatch func()) (stop string, err error) {
	for len(c.nodes) < n {
		if time.Now().After(deadline) {
			return fmt.Sprintf("the time for the start ran out at %d nodes", len(c.nodes)), nil
		}
		from, first := max(len(c.nodes), 1), len(c.nodes)
		t0, cpu0, drops0, alarms0 := time.Now(), cpuSeconds(), udpRcvbufErrors(), c.warns.falseAlarms()
		for k := 0; k < batch && len(c.nodes) < n; k++ {
			if err := c.add(3, from); err != nil {
				return "", err
			}
		}
		var seen, missing int
		var rate float64
		var tSeen time.Duration
		settled := false
		var rss int64
		for time.Since(t0) < perBatch && !settled {
			if rss = rssBytes(); rss > maxRSS {
				break
			}
			rate = cpuRate(500 * time.Millisecond)
			seen, missing = c.minMembers(), c.unseen()
			if paced {
				if tSeen == 0 && c.joined(c.nodes[first:]) {
					tSeen = time.Since(t0)
				}
				settled = tSeen > 0 && rate < calm
			} else if missing <= max(2, len(c.nodes)/100) {
				if tSeen == 0 {
					tSeen = time.Since(t0)
				}
				settled = rate < calm
			}
		}
		alarms := c.warns.falseAlarms() - alarms0
		what := "seen by all (but missed broadcasts)"
		if paced {
			what = "the batch joined"
		}
		progress(fmt.Sprintf("%d nodes running: %s after %.1f s (fewest now %d, %d pairs unseen), calm (%.2f cores) after %.1f s, %.1f s CPU for the batch, %d false alarms, %d UDP receive-buffer drops, heap %s, goroutines %d; warnings so far: %s",
			len(c.nodes), what, tSeen.Seconds(), seen, missing, rate, time.Since(t0).Seconds(), cpuSeconds()-cpu0, alarms, udpRcvbufErrors()-drops0, heapText(), runtime.NumGoroutine(), c.warns.snapshot()))
		switch {
		case rss > maxRSS:
			return fmt.Sprintf("the process's RSS passed %.1f GiB (safety stop) in the batch to %d nodes", float64(maxRSS)/(1<<30), len(c.nodes)), nil
		case !settled && len(c.nodes) < n:
			return fmt.Sprintf("the batch to %d nodes did not settle within %s (fewest members seen %d, %d (node, member) pairs unseen, %.2f cores busy)", len(c.nodes), perBatch, seen, missing, rate), nil
		case alarms >= maxAlarms && len(c.nodes) < n:
			return fmt.Sprintf("the failure detector raised %d false alarms during the batch to %d nodes (all nodes stay up)", alarms, len(c.nodes)), nil
		}
		if afterBatch != nil && len(c.nodes) < n {
			afterBatch()
		}
	}
	return "", nil
}

// spread runs trigger and returns, for every node of watch that got there
// within timeout, the delay (s) from just before trigger until the signal
// of gossip.Changes after which reached(node) first held. Every node has its
// own watcher goroutine, so a check never waits for another node's.
func spread(watch []*simNode, timeout time.Duration, reached func(*simNode) bool, trigger func() error) ([]float64, error) {
	var (
		mu    sync.Mutex
		out   []float64
		ready sync.WaitGroup
		wg    sync.WaitGroup
		t0    time.Time
	)
	done := make(chan struct{})
	start := make(chan struct{})
	for _, s := range watch {
		ready.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select { // a stale signal from before the change
			case <-s.g.Changes():
			default:
			}
			ready.Done()
			<-start
			for {
				select {
				case <-done:
					return
				case <-s.g.Changes():
				}
				at := time.Now()
				if reached(s) {
					mu.Lock()
					out = append(out, at.Sub(t0).Seconds())
					mu.Unlock()
					return
				}
			}
		}()
	}
	ready.Wait()
	t0 = time.Now()
	close(start)
	errc := make(chan error, 1)
	go func() { errc <- trigger() }()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(out)
		mu.Unlock()
		if n == len(watch) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(done)
	wg.Wait()
	return out, <-errc
}

func waitAllArrival(nodes []*simNode, timeout time.Duration, doc []byte, t0 time.Time) []float64 {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		all := true
		for _, s := range nodes {
			if _, ok := s.docs.arrival(doc); !ok {
				all = false
				break
			}
		}
		if all {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var out []float64
	for _, s := range nodes {
		if at, ok := s.docs.arrival(doc); ok {
			out = append(out, at.Sub(t0).Seconds())
		}
	}
	return out
}

// simSeeds is the seed list of the next simulated node: the given seeds plus
// the first and the middle of the nodes already started (spread the joins).
func simSeeds(seeds []string, nodes []*simNode) []string {
	s := append([]string(nil), seeds...)
	if len(nodes) > 0 {
		s = append(s, nodes[0].g.Addr().String())
		if len(nodes) > 1 {
			s = append(s, nodes[len(nodes)/2].g.Addr().String())
		}
	}
	return s
}
