package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
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
// without UDP/IP headers), summed over every node of the process.
type byteSink struct {
	metrics.BlackholeSink
	udp, tcp atomic.Int64
}

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
		s := append([]string(nil), seeds...)
		if len(nodes) > 0 {
			s = append(s, nodes[0].g.Addr().String())
			if len(nodes) > 1 {
				s = append(s, nodes[len(nodes)/2].g.Addr().String())
			}
		}
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

func shutdownSim(nodes []*simNode) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); _ = n.g.Shutdown() }()
	}
	wg.Wait()
}

func benchGossip(prm Params) []Row {
	sink := installSink()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	n := prm.GossipNodes
	t0 := time.Now()
	nodes, err := startSimNodes(n, key, "segmesh-bench",
		func(i int) string { return fmt.Sprintf("127.1.%d.%d", i/200, i%200+1) },
		func(int) int { return 0 }, func(int) int { return 51820 }, nil, map[string]string{"role": "sim"})
	defer shutdownSim(nodes)
	if err != nil {
		return errRow("6", "gossip at scale", err)
	}
	// Convergence: every node sees every node alive.
	deadline := time.Now().Add(max(prm.JoinWait, time.Duration(n/10)*time.Second))
	minSeen, lastLog := 0, time.Now()
	for time.Now().Before(deadline) {
		minSeen = n
		for _, s := range nodes {
			minSeen = min(minSeen, s.g.NumMembers())
		}
		if minSeen >= n {
			break
		}
		if time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			logf("gossip: %d nodes started %s ago, fewest members seen by a node %d", n, time.Since(t0).Round(time.Second), minSeen)
		}
		time.Sleep(500 * time.Millisecond)
	}
	tConv := time.Since(t0)
	logf("gossip: %d nodes, fewest members seen by a node %d, after %s", n, minSeen, tConv.Round(time.Second))
	convNote := fmt.Sprintf("%d in-process gossip.New nodes on 127.1.x.y (distinct addresses, free ports), production LAN timings, genuine records (fresh WireGuard keys, derived addresses), encrypted and labelled; started in batches of 50, all alive on every node after %.1f s (fewest members seen by a node: %d).", n, tConv.Seconds(), minSeen)
	time.Sleep(3 * time.Second) // settle join traffic
	// Idle bandwidth.
	b0, w0 := sink.total(), time.Now()
	time.Sleep(prm.GossipIdle)
	idle := float64(sink.total()-b0) * 8 / float64(n) / time.Since(w0).Seconds() / 1000
	var rows []Row
	// Tag change.
	target := nodes[n/3]
	rec := target.rec
	rec.Tags = map[string]string{"role": "sim", "gen": "changed"}
	marker := []byte(`"gen":"changed"`)
	b1, tc := sink.total(), time.Now()
	if err := target.g.UpdateLocal(rec); err != nil {
		return errRow("6", "gossip at scale", err)
	}
	others := make([]*simNode, 0, n-1) // every node but the changing one (Members excludes self)
	for _, s := range nodes {
		if s != target {
			others = append(others, s)
		}
	}
	tagTimes := waitAll(others, 10*time.Second, func(s *simNode) bool {
		for _, m := range s.g.Members() {
			if m.Name == rec.PublicKey {
				return bytes.Contains(m.Meta, marker)
			}
		}
		return false
	}, tc)
	tagBytes := sink.total() - b1
	tagSecs := time.Since(tc).Seconds()
	// Document.
	doc := []byte(fmt.Sprintf("doc-%d", time.Now().UnixNano()))
	b2, td := sink.total(), time.Now()
	nodes[0].docs.MergeDocument("bench", doc)
	if err := nodes[0].g.Publish("bench", doc); err != nil {
		return errRow("6", "gossip at scale", err)
	}
	docTimes := waitAllArrival(nodes[1:], 10*time.Second, doc, td)
	docBytes := sink.total() - b2
	docSecs := time.Since(td).Seconds()

	for _, x := range []struct {
		id, what string
		times    []float64
		bytes    int64
		secs     float64
	}{{"6a", "gossip tag change (UpdateLocal) reaching all nodes", tagTimes, tagBytes, tagSecs},
		{"6b", "gossip published document reaching all nodes", docTimes, docBytes, docSecs}} {
		reached, want := len(x.times), n-1 // the originator excluded
		p99, p100 := "not reached", "not reached"
		ok := reached == want
		if reached >= (want*99+99)/100 {
			p99 = fmt.Sprintf("%.2f s", percentile(x.times, 99*float64(want)/float64(reached)))
		}
		if ok {
			p100 = fmt.Sprintf("%.2f s", percentile(x.times, 100))
		}
		worst := 10.0
		if ok {
			worst = percentile(x.times, 100)
		}
		rows = append(rows, Row{ID: x.id, What: fmt.Sprintf("%s (%d nodes)", x.what, n),
			Measured: fmt.Sprintf("99%% %s, 100%% %s (%d/%d other nodes reached); %.1f kbit/s per node while it spread", p99, p100, reached, want, float64(x.bytes)*8/float64(n)/x.secs/1000),
			Target:   "100% ≤ 3 s", Ratio: fmt.Sprintf("%.2f of target", worst/3), Verdict: verdict(ok && worst <= 3),
			Note: map[string]string{"6a": convNote, "6b": "node 0 publishes a small document (broadcast); each other node's DocumentHandler notes its arrival. Tag change: one node calls UpdateLocal with a changed tag; every other node's Members() is polled (20 ms) for the new meta."}[x.id]})
	}
	rows = append(rows, Row{ID: "6c", What: fmt.Sprintf("gossip idle bandwidth per node (%d nodes)", n),
		Measured: fmt.Sprintf("%.2f kbit/s sent", idle), Target: "≤ 50 kbit/s", Ratio: fmt.Sprintf("%.2f of target", idle/50), Verdict: verdict(idle <= 50),
		Note: fmt.Sprintf("bytes from memberlist's own go-metrics counters memberlist.udp.sent + memberlist.tcp.sent (encrypted payload, no UDP/IP/TCP headers; stream user messages not counted) through a counting sink, summed over all nodes of the process over %s of idle and divided by nodes and time; push/pull exchanges land in the window in proportion (each node has its own timer).", prm.GossipIdle)})
	return rows
}

// waitAll polls every node until cond holds (or timeout) and returns the
// delays (s) since t0 of the nodes that got there, in poll resolution.
func waitAll(nodes []*simNode, timeout time.Duration, cond func(*simNode) bool, t0 time.Time) []float64 {
	done := make([]bool, len(nodes))
	var out []float64
	deadline := time.Now().Add(timeout)
	for len(out) < len(nodes) && time.Now().Before(deadline) {
		for i, s := range nodes {
			if !done[i] && cond(s) {
				done[i] = true
				out = append(out, time.Since(t0).Seconds())
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out
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
