package main

import (
	"bytes"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"
)

// gossipMemLimit is a soft cap on the memory of the process while the
// simulation runs (the collector works harder as the heap nears it), and
// gossipMaxRSS the resident size at which the start stops adding nodes
// (safety stop: this machine's RAM is shared with the rest of the suite).
const (
	gossipMemLimit = 8 << 30
	gossipMaxRSS   = 10 << 30
)

// gossipCalmCores: the next batch of simulated nodes starts once the
// process uses less CPU than this (half of this 2-core machine).
const gossipCalmCores = 1.0

var (
	gossipCompress = flag.Bool("gossip-compress", false, "row 6: turn memberlist's LZW compression on in the simulated nodes (the daemon keeps it off: gossip.Config.Compress)")
	gossipHeapProf = flag.String("gossip-heap-profile", "", "row 6: write a heap profile (after a GC) to this file once the start is done")
)

// benchGossip is row 6: GossipNodes simulated nodes in this process.
func benchGossip(prm Params) []Row {
	oldLimit := debug.SetMemoryLimit(gossipMemLimit)
	defer debug.SetMemoryLimit(oldLimit)
	sink := installSink()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	n := prm.GossipNodes
	c := newSimCluster(key, prm.GossipProbe, prm.GossipProbeTimeout, *gossipCompress)
	defer c.shutdown()

	t0, cpu0, drops0 := time.Now(), cpuSeconds(), udpRcvbufErrors()
	progress := func(s string) { logf("gossip: %s (%s since the first start)", s, time.Since(t0).Round(time.Second)) }
	deadline := t0.Add(prm.GossipWait)
	var sweep []string // idle cost on the way up
	afterBatch := func() {
		if k := len(c.nodes); k%prm.GossipSweep == 0 && c.minMembers() >= k-1 {
			settle(sink, len(c.nodes), prm.GossipProbe, 60*time.Second)
			idle := measureIdle(sink, k, 10*time.Second)
			sweep = append(sweep, fmt.Sprintf("%d nodes: %.2f cores = %.2f ms of CPU per node per s, %.1f kbit/s per node", k, idle.cores, idle.cores*1000/float64(k), idle.kbit()))
			progress("idle at " + sweep[len(sweep)-1])
		}
	}
	stop, err := c.stagedStart(n, prm.GossipBatch, prm.GossipPaced, gossipCalmCores, 30*time.Second, 3, gossipMaxRSS, deadline, progress, afterBatch)
	if err != nil || len(c.nodes) < 2 {
		return errRow("6", "gossip at scale", fmt.Errorf("%d nodes started: %w", len(c.nodes), err))
	}
	asked := n
	n = len(c.nodes) // fewer when the simulation stopped keeping up
	tStarted := time.Since(t0)
	minSeen, last := 0, time.Now()
	for time.Now().Before(deadline) {
		if minSeen = c.minMembers(); minSeen >= n {
			break
		}
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			progress(fmt.Sprintf("all %d running, fewest members seen %d, %d (node, member) pairs unseen, CPU %.2f cores, heap %s; warnings so far: %s", n, minSeen, c.unseen(), cpuRate(500*time.Millisecond), heapText(), c.warns.snapshot()))
		}
		time.Sleep(500 * time.Millisecond)
	}
	minSeen = c.minMembers()
	tConv, cpuConv := time.Since(t0), cpuSeconds()-cpu0
	rssStart := rssBytes()
	progress(fmt.Sprintf("start done: fewest members seen %d of %d, %.0f s CPU, %d UDP receive-buffer drops, heap %s; warnings: %s", minSeen, n, cpuConv, udpRcvbufErrors()-drops0, heapText(), c.warns.snapshot()))
	if *gossipHeapProf != "" {
		if err := writeHeapProfile(*gossipHeapProf); err != nil {
			return errRow("6", "gossip at scale", err)
		}
	}
	pp0, tcp0 := sink.pushPulls.Load(), sink.tcp.Load() // push/pull exchanges from here on (6c)

	timing := "production LAN timings"
	if prm.GossipProbe > 0 {
		timing = fmt.Sprintf("production LAN timings for dissemination (gossip every 200 ms to 3 nodes, retransmit mult 4, push/pull 30 s scaled) but a relaxed failure detector (probe every %s, %s timeout instead of 1 s / 500 ms; see the method)", prm.GossipProbe, prm.GossipProbeTimeout)
	}
	startNote := fmt.Sprintf("%d in-process gossip.New nodes on 127.1.x.y (distinct addresses, free ports), %s, genuine records (fresh WireGuard keys, derived addresses), encrypted and labelled. "+
		"Started in batches of %d, each node seeded with 3 random nodes of earlier batches, %s: all %d running after %.0f s; "+
		"after %.0f s every node saw %s (fewest %d of %d), %.0f s of CPU for the start (%.0f ms per node joined), RSS then %.1f GiB.",
		n, timing, prm.GossipBatch, gossipPacing(prm), n, tStarted.Seconds(), tConv.Seconds(), map[bool]string{true: "every node", false: "not yet every node"}[minSeen == n], minSeen, n, cpuConv, cpuConv*1000/float64(n), float64(rssStart)/(1<<30))
	if stop != "" {
		startNote = fmt.Sprintf("**%d of the %d nodes asked for**: the start stopped growing the cluster because %s; the rows are measured on the %d running. ", n, asked, stop, n) + startNote
	}

	drainWait, drained := settle(sink, n, prm.GossipProbe, prm.GossipDrain)
	progress(fmt.Sprintf("broadcast backlog drained: %v after %.0f s", drained, drainWait.Seconds()))
	ch, err := measureChanges(c, sink, prm, drained)
	if err != nil {
		return errRow("6", "gossip at scale", err)
	}

	// Idle bandwidth and CPU.
	var stopProfile func()
	if prm.GossipIdleProfile != "" {
		if stopProfile, err = startCPUProfile(prm.GossipIdleProfile); err != nil {
			return errRow("6", "gossip at scale", err)
		}
	}
	idle := measureIdle(sink, n, prm.GossipIdle)
	if stopProfile != nil {
		stopProfile()
	}
	idle.pushPulls, idle.pushPullBytes = sink.pushPulls.Load()-pp0, sink.tcp.Load()-tcp0
	logf("gossip: idle %.2f kbit/s per node (UDP %.2f, TCP %.2f), CPU %.2f cores = %.2f ms per node per s; %d push/pull exchanges since the start, %.0f KiB each",
		idle.kbit(), idle.udpKbit, idle.tcpKbit, idle.cores, idle.cores*1000/float64(n), idle.pushPulls, idle.perPushPull()/1024)

	var rows []Row
	for _, x := range []struct {
		id, what string
		w        window
		note     string
	}{{"6a", "gossip tag change (UpdateLocal) reaching all nodes", ch.tag, startNote + ch.when +
		" The change is timed from just before UpdateLocal until each node's Changes signal after which its Member() view of the changed node shows the new tag (one watcher goroutine per node)."},
		{"6b", "gossip published document reaching all nodes", ch.doc,
			"node 0 publishes a small document (broadcast, as a policy apply does); each other node's DocumentHandler notes its arrival."}} {
		rows = append(rows, spreadRow(x.id, fmt.Sprintf("%s (%d nodes)", x.what, n), x.w.times, n-1, x.w.bytes, x.w.secs,
			fmt.Sprintf("%s Window %.1f s; the whole simulation used %.1f s of CPU in it.", x.note, x.w.secs, x.w.cpu)))
	}
	rows = append(rows, idleRow(prm, n, *gossipCompress, idle, sweep, drainWait, drained))
	if n >= 200 && n < 1000 { // a small run says little about 1,000
		rows = append(rows, scaleRow(n, cpuConv, tConv, rssStart, idle))
	}
	return rows
}

// window is one timed change: each reached node's delay (s), and the bytes
// all nodes sent, the process's CPU and the wall clock over the window.
type window struct {
	times     []float64
	bytes     int64
	cpu, secs float64
}

// changeTimes are rows 6a and 6b, and when they were taken.
type changeTimes struct {
	tag, doc window
	when     string
}

// measureChanges times a tag change (6a) of the node a third of the way in
// and a document published by node 0 (6b). drained says whether the join
// broadcasts have run out; when they have not, the UDP rate per node just
// before the change is noted (the backlog the change competed with:
// memberlist sends the broadcasts with the fewest transmissions first).
func measureChanges(c *simCluster, sink *byteSink, prm Params, drained bool) (changeTimes, error) {
	var ch changeTimes
	n := len(c.nodes)
	if !drained {
		u, t := sink.udp.Load(), time.Now()
		time.Sleep(2 * time.Second)
		kbit := float64(sink.udp.Load()-u) * 8 / float64(n) / time.Since(t).Seconds() / 1000
		ch.when = fmt.Sprintf(" The join broadcasts were still being relayed when the change was made (UDP %.1f kbit/s per node just before: memberlist sends the broadcasts with the fewest transmissions first, so a change overtakes the backlog but shares every packet and the CPU with it).", kbit)
	}
	target := c.nodes[n/3]
	others := make([]*simNode, 0, n-1)
	for _, s := range c.nodes {
		if s != target {
			others = append(others, s)
		}
	}
	rec := target.rec
	rec.Tags = map[string]string{"role": "sim", "gen": "changed"}
	marker := []byte(`"gen":"changed"`)
	b1, c1, tc := sink.total(), cpuSeconds(), time.Now()
	tagTimes, err := spread(others, 10*time.Second, func(s *simNode) bool {
		m, ok := s.g.Member(rec.PublicKey)
		return ok && bytes.Contains(m.Meta, marker)
	}, func() error { return target.g.UpdateLocal(rec) })
	if err != nil {
		return ch, err
	}
	ch.tag = window{tagTimes, sink.total() - b1, cpuSeconds() - c1, time.Since(tc).Seconds()}
	logf("gossip: tag change reached %d/%d nodes, slowest %.2f s", len(tagTimes), len(others), percentile(tagTimes, 100))

	settle(sink, n, prm.GossipProbe, 30*time.Second) // let the tag change's retransmissions pass
	doc := []byte(fmt.Sprintf("doc-%d", time.Now().UnixNano()))
	b2, c2, td := sink.total(), cpuSeconds(), time.Now()
	c.nodes[0].docs.MergeDocument("bench", doc)
	if err := c.nodes[0].g.Publish("bench", doc); err != nil {
		return ch, err
	}
	docTimes := waitAllArrival(c.nodes[1:], 10*time.Second, doc, td)
	ch.doc = window{docTimes, sink.total() - b2, cpuSeconds() - c2, time.Since(td).Seconds()}
	logf("gossip: document reached %d/%d nodes, slowest %.2f s", len(docTimes), n-1, percentile(docTimes, 100))
	return ch, nil
}

// spreadRow reports how long a change took to reach 99% and 100% of want
// nodes (times: the delays of those it reached).
func spreadRow(id, what string, times []float64, want int, bytes int64, secs float64, note string) Row {
	reached := len(times)
	p99, p100 := "not reached", "not reached"
	ok := reached == want
	need99 := (want*99 + 99) / 100
	if reached >= need99 {
		p99 = fmt.Sprintf("%.2f s", nthSmallest(times, need99))
	}
	worst := 10.0
	if ok {
		worst = percentile(times, 100)
		p100 = fmt.Sprintf("%.2f s", worst)
	}
	return Row{ID: id, What: what,
		Measured: fmt.Sprintf("99%% %s, 100%% %s (%d/%d other nodes reached); %.1f kbit/s per node while it spread", p99, p100, reached, want, float64(bytes)*8/float64(want+1)/secs/1000),
		Target:   "100% ≤ 3 s", Ratio: fmt.Sprintf("%.2f of target", worst/3), Verdict: verdict(ok && worst <= 3), Note: note}
}

// idleRow is row 6c: the idle bytes per node at the production rates.
// With a relaxed failure detector the UDP share (probes and their acks) is
// scaled back to the production probe rate. The TCP share is one push/pull
// exchange per node per memberlist push/pull period, at the size the
// exchanges since the end of the start had: a 20 s window holds a handful
// of each node's 2–3-minute period, and after a quick start the nodes'
// timers are bunched, so the window alone would over- or under-count them.
func idleRow(prm Params, n int, compressed bool, idle idleCost, sweep []string, drainWait time.Duration, drained bool) Row {
	udp, udpNote := idle.udpKbit, ""
	if prm.GossipProbe > time.Second {
		f := prm.GossipProbe.Seconds() // probes per second at production / here
		udp *= f
		udpNote = fmt.Sprintf(" The simulated nodes probe every %s instead of every 1 s, so the idle UDP traffic (probes and acks) is multiplied by %.0f for the production figure.", prm.GossipProbe, f)
	}
	every := pushPullInterval(30*time.Second, n)
	tcp, tcpText, tcpNote := idle.tcpKbit, fmt.Sprintf("%.2f as measured in the window", idle.tcpKbit), " No push/pull exchange was seen: the TCP figure is the window's own."
	if idle.pushPulls > 0 {
		tcp = idle.perPushPull() * 8 / 1000 / every.Seconds()
		tcpText = fmt.Sprintf("%.2f: one push/pull of %.0f KiB every %s", tcp, idle.perPushPull()/1024, every)
		tcpNote = fmt.Sprintf(" TCP: each node starts one push/pull exchange (both sides send their whole state) every %s at %d nodes (memberlist's 30 s scaled by cluster size); %d exchanges since the end of the start averaged %.0f KiB (both directions), which gives the TCP figure; the window itself saw %.2f kbit/s.",
			every, n, idle.pushPulls, idle.perPushPull()/1024, idle.tcpKbit)
	}
	kbit := udp + tcp
	measured := fmt.Sprintf("%.2f kbit/s at the production probe and push/pull rates (UDP %.2f, TCP %s)", kbit, udp, tcpText)
	comp := " The simulated nodes do not compress, as the daemon does not (gossip.Config.Compress)."
	if compressed {
		measured += ", compressed (-gossip-compress; the daemon does not compress)"
		comp = " memberlist's LZW compression was turned on in the simulated nodes (-gossip-compress); the daemon keeps it off, so its bytes are higher than these."
	}
	drain := fmt.Sprintf(" The window starts once the join broadcasts have run out (UDP send rate down to the probes' alone, after %.0f s).", drainWait.Seconds())
	if !drained {
		drain = fmt.Sprintf(" The join broadcasts were still being retransmitted when the window began (%.0f s waited for them): the UDP figure is an upper bound.", drainWait.Seconds())
	}
	sw := ""
	if len(sweep) > 0 {
		sw = " Idle on the way up: " + strings.Join(sweep, "; ") + "."
	}
	return Row{ID: "6c", What: fmt.Sprintf("gossip idle bandwidth per node (%d nodes)", n),
		Measured: measured, Target: "≤ 50 kbit/s", Ratio: fmt.Sprintf("%.2f of target", kbit/50), Verdict: verdict(kbit <= 50),
		Note: fmt.Sprintf("bytes from memberlist's own go-metrics counters memberlist.udp.sent + memberlist.tcp.sent (encrypted payload, no UDP/IP/TCP headers; stream user messages not counted) through a counting sink, summed over all nodes of the process over %s of idle and divided by nodes and time (UDP measured %.2f kbit/s).%s%s%s "+
			"The simulation used %.2f cores while idle: %.2f ms of CPU per node per second.%s%s", prm.GossipIdle, idle.udpKbit, udpNote, tcpNote, comp, idle.cores, idle.cores*1000/float64(n), drain, sw)}
}

// scaleRow (6d) explains from this run's own figures what 1,000 simulated
// nodes would cost: startCPU and startWall are what starting n took, rss
// the process's resident size then.
func scaleRow(n int, startCPU float64, startWall time.Duration, rss int64, idle idleCost) Row {
	const big = 1000
	// Joins cost O(N²) messages, each relayed ceil(log10(N+1))·4 times: 12
	// per node below 1,000 nodes, 16 from 1,000.
	predicted := startCPU * (big / float64(n)) * (big / float64(n)) * 16 / 12
	measured := fmt.Sprintf("start of %d: %.0f s of CPU, %.0f s of wall clock, RSS %.1f GiB → 1,000 ≈ %.0f s of CPU (%.1f min of both cores flat out), but ≥ %.0f s of wall clock for the join broadcasts to run out; idle: %.2f of %d cores",
		n, startCPU, startWall.Seconds(), float64(rss)/(1<<30), predicted, predicted/float64(runtime.NumCPU())/60, float64(big*16)/60, idle.cores, runtime.NumCPU())
	note := fmt.Sprintf("Row 6 asks for 1,000 nodes. Every join is an alive message that every node relays RetransmitMult × ceil(log10(N+1)) times (12 below 1,000 nodes, 16 from 1,000), plus four push/pulls of the whole member list, "+
		"so one process simulating N nodes pays O(N² log N) of CPU for the start: %.0f s for %d nodes here, ≈ %.0f s for 1,000 (× (1000/%d)² × 16/12). ", startCPU, n, predicted, n) +
		"The nodes do not compress their packets, as the daemon does not (memberlist's LZW allocates and clears a 64 KiB table per packet: it was 60% of the simulation's CPU at 300 nodes), gossip's transport hands each received datagram on in a buffer of its size instead of a fresh 64 KiB one, and the collector runs normally (a 4 GiB soft limit), which took the start of 300 nodes from 56 s to 21 s of CPU and kept the RSS of 800 nodes at 1.7 GiB (it was on the way to 8 GiB at 300). " +
		fmt.Sprintf("Wall clock bounds it too, and a real fleet has the same: a node sends at most about 3 packets of 3–4 queued messages per gossip round (5 rounds a second), so the %d × 16 relays every node owes after a start of %d take ≥ %.0f s to run out whatever the CPU. ", big, big, float64(big*16)/60) +
		"This row appears when fewer than 1,000 nodes ran: fewer were asked for (-gossip-nodes), or the start stopped early, and 6a then says why (3 false alarms in a batch, a batch not settling within 30 s, or the RSS safety stop). The full suite's paced start reached 1,000 nodes in about 50 s on this machine, every node seeing every node after about 200 s. " +
		"In a real fleet each daemon pays O(N log N) of this CPU on its own; idle it costs what row 6c shows."
	return Row{ID: "6d", What: fmt.Sprintf("gossip simulation cost: why %d nodes and not 1,000", n), Measured: measured, Verdict: Info, Note: note}
}

// nthSmallest is the k-th smallest of v (1-based).
func nthSmallest(v []float64, k int) float64 {
	return percentile(v, 100*float64(k)/float64(len(v)))
}

// writeHeapProfile writes the live heap (after a collection) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}
