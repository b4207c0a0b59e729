package main

import "fmt"

func methodText(p Params) string {
	return fmt.Sprintf(`Everything runs on this one machine, as root, in network namespaces made for the run and deleted after it
(test/harness: an underlay namespace with a bridge, one namespace per node, 192.0.2.0/24).

- **Data plane (rows 1–3).** Two real `+"`segmesh up`"+` nodes (policy enforced: every mesh node may reach segment
  "bench" on the benchmark ports) and, in the same two namespaces at the same time, a standalone upstream
  wireguard-go %s (built with `+"`go install`"+`, configured with `+"`wg`"+`, MTU 1420), plus the raw underlay
  (veth through the bridge). iperf3 from A to B; the order of raw / wireguard-go / segmesh rotates every run,
  %d runs of %d s per configuration, medians; a ratio between two configurations is the median of the per-run
  ratios (both measured in every run, so the drift of the machine's speed between runs cancels). Before the runs 10,000 extra elements (fake sources) are
  written with `+"`nft -f`"+` into the IPv4 source set of A's identity on B, found at run time as the
  set id_N_s4 holding sources (the layout may change). Row 2 alternates in every run a segmesh
  measurement with 100,000 extra elements and one with only the policy's elements. Latency: ping (-i 0.005) and a
  1-byte TCP request/response on one connection (this program's rr helper), %d alternated rounds.
- **Crypto ceiling (row 4).** testing.Benchmark of ChaCha20-Poly1305 Seal+Open of a 1420-byte packet on one core,
  scaled to all cores and to TCP goodput; an upper bound no tunnel reaches.
- **Mesh (row 5).** %d real nodes; formation from start to every status listing every peer up and every
  `+"`wg show`"+` having a handshake with every peer. Propagation is measured on the data plane: a prober in the
  changing node's namespace dials a TCP port on every other node every 20 ms and logs when each starts/stops
  answering; the delay runs from the command (reload / policy apply) to that moment, for grants and removals.
  Revocation (5d) uses a second %d-node cluster in CA mode (`+"`ca init`"+`, `+"`cert issue`"+` per node, signed policy):
  `+"`cert revoke`"+` through n0's socket, timed until every server refuses the revoked node's probe; after a
  revocation by serial the node gets a new certificate and reloads, the last round revokes its key.
- **Gossip at scale (row 6).** %d gossip.New nodes in this process on loopback addresses 127.1.x.y (real UDP/TCP
  sockets through segmesh's own gossip transport, as in the daemon), genuine records, encrypted and labelled, started in batches of %d seeded
  from earlier batches (%s). The changes are made once every node sees every node and the join broadcasts
  have run out (the UDP send rate is down to the probes'). Dissemination uses production LAN timings (gossip every 200 ms to 3 nodes, retransmit
  mult 4, push/pull every 30 s scaled by cluster size); %s.
  memberlist's compression is off, as in the daemon (gossip.Config.Compress: it builds a 64 KiB table per packet,
  and compressing before encrypting leaks through lengths); encryption stays on. The Go garbage collector runs with
  a %.0f GiB soft limit and the start stops if the process passes %.0f GiB of RSS. Spread times come from each node's own
  Changes signal (tag) or document handler (document); bandwidth from memberlist's own byte counters
  (go-metrics), per node on average; CPU from getrusage of this process.
- **Go benchmarks.** `+"`go test -bench ... -benchmem -benchtime %s`"+` of the compiler, the nft diff (acl) and the
  node record codec (gossip), run by this program in the same run; see their section.
- **Control plane (row 7).** The acl package's Go benchmarks (`+"`go test -run '^$' -bench ... -benchtime %s ./acl/`"+`),
  ns/op of the kernel variants for the applies.
- **Footprint (row 8).** One real daemon and simulated gossip members announcing genuine records in a second
  namespace on its underlay; RSS from /proc/PID/status, CPU from /proc/PID/stat over %s.
- **Workloads (rows 10).** Two real daemons; a declares 32 workloads by cgroup (8 at each of levels 2–5 of a
  cgroup tree made below the cgroup2 mount for the run and removed after it) and enforces egress; processes are
  put into cgroups with `+"`nsenter --net`"+` and `+"`echo $$ > cgroup.procs`"+`. 10a: one TCP stream from a to b while the
  output hook's jump to mesh_out is removed and restored every 0.5 s (egress off/on), each on phase against the off
  phases beside it, the sender in no workload (every cgroup rule walked) and in a level-5 workload; for reference
  %d alternated separate iperf3 runs of %d s per configuration; 10b: a workload's cgroup removed and made again (new id) with a
  prober moved into it, until its connection to the port only that workload may reach is accepted; 10c: connect()
  to a denied port from a workload and from no workload, until ECONNREFUSED.
- **Allowed-flow observation (rows 11).** Two real daemons, b observing what it admits (chain allow_in
  counting into dynamic sets, read every second into flows.Allowed). Observation off: b's allow_in flushed
  down to its accept in one nft batch; on: the daemon's rules restored from `+"`nft list chain`"+` (checked
  identical). 11a: one TCP stream a→b while observation is switched every 0.5 s, each on phase against the
  off phases beside it, and for reference %d alternated iperf3 runs of %d s per configuration; 11b: 2,000 new
  TCP connections a second a→b (connect, one byte echoed, close) for 10 s, b's daemon CPU from /proc/PID/stat,
  observation on alternated with off, and the connections counted in b's /v1/flows against those made;
  11c: `+"`segmesh policy suggest --fleet`"+` timed on a 10-node mesh in audit mode after every node connected
  to every other on four ports (n/a while the binary has no --fleet); 11d: the Go heap of flows.Allowed filled
  to its 16,384 bound (runtime.ReadMemStats around the fill, GC before and after).
- **Quarantine (rows 12).** %d real nodes in enforce mode (every node may reach every node on tcp/7000 and by ICMP),
  n0 in segment ops, X = the last node; every node runs an echo server on tcp/7000 and a prober (a new TCP
  connection every 20 ms, 40 ms timeout): the others dial X, X dials all of them. %d cycles of
  `+"`segmesh quarantine X --allow-from ops`"+` through n0's socket, then, once every node is cut,
  `+"`segmesh release X`"+`; per cycle and node the delay from starting the command until its probes flip (the final
  flip: flaps before it do not count); 12a: X's probe to the node and the node's to X both refused (n0: X's
  only, its own, the forensic path, must stay up), 12b: both answering again. A pair is cut by whichever end
  enforces first and restored once both have lifted it, so each node's own enforcement is also read from its
  log (the line after its nft batch), with when it learned the entry by gossip.

Ratios: measured / reference for comparisons, measured / target for absolute targets.`,
		WireGuardGoVersion, p.Runs, p.Secs, p.LatRounds, p.MeshNodes, p.MeshNodes, p.GossipNodes, p.GossipBatch, gossipPacing(p), gossipFD(p),
		float64(gossipMemLimit)/(1<<30), float64(gossipMaxRSS)/(1<<30), p.GoBenchTime, p.BenchTime, p.CPUWindow, wlRuns(p), min(p.Secs, 2), wlRuns(p), min(p.Secs, 2), p.MeshNodes, p.QuarCycles)
}

// gossipFD describes the simulated nodes' failure detector.
func gossipFD(p Params) string {
	if p.GossipProbe <= 0 {
		return "the failure detector has production timings too (probe every 1 s, 500 ms timeout)"
	}
	return fmt.Sprintf("the failure detector is relaxed to a probe every %s with a %s timeout (production: 1 s, 500 ms): "+
		"with production probes, one process of a few hundred simulated nodes on this 2-core machine misses ack deadlines "+
		"during join bursts, raises false suspicions, and each one costs a broadcast to every node (a spiral that "+
		"took the simulation down from about 425 nodes); probes carry piggybacked broadcasts, so fewer probes can only "+
		"slow the measured spread, and the idle UDP (probe) traffic is scaled back to one probe a second in row 6c",
		p.GossipProbe, p.GossipProbeTimeout)
}

// gossipPacing describes when the next batch of simulated nodes starts.
func gossipPacing(p Params) string {
	if p.GossipPaced {
		return fmt.Sprintf("the next batch once every node of the last one had joined and the process used < %.1f cores (the batches' alive broadcasts spread concurrently)", gossipCalmCores)
	}
	return fmt.Sprintf("the next batch once the running nodes saw each other (but for missed alive broadcasts in at most 1%% as many (node, member) pairs as nodes, which push/pull repairs) and the process used < %.1f cores", gossipCalmCores)
}
