package main

import "fmt"

func methodText(p Params) string {
	return fmt.Sprintf(`Everything runs on this one machine, as root, in network namespaces made for the run and deleted after it
(test/harness: an underlay namespace with a bridge, one namespace per node, 192.0.2.0/24).

- **Data plane (rows 1–3).** Two real `+"`segmesh up`"+` nodes (policy enforced: every mesh node may reach segment
  "bench" on the benchmark ports) and, in the same two namespaces at the same time, a standalone upstream
  wireguard-go %s (built with `+"`go install`"+`, configured with `+"`wg`"+`, MTU 1420), plus the raw underlay
  (veth through the bridge). iperf3 from A to B; the order of raw / wireguard-go / segmesh rotates every run,
  %d runs of %d s per configuration, medians. Before the runs 10,000 extra elements (fake sources, tcp/9) are
  written with `+"`nft -f`"+` into B's IPv4 allow set, found at run time as the set typed
  ipv4_addr . inet_proto . inet_service (the layout may change). Row 2 alternates in every run a segmesh
  measurement with 100,000 extra elements and one with only the policy's elements. Latency: ping (-i 0.005) and a
  1-byte TCP request/response on one connection (this program's rr helper), %d alternated rounds.
- **Crypto ceiling (row 4).** testing.Benchmark of ChaCha20-Poly1305 Seal+Open of a 1420-byte packet on one core,
  scaled to all cores and to TCP goodput; an upper bound no tunnel reaches.
- **Mesh (row 5).** %d real nodes; formation from start to every status listing every peer up and every
  `+"`wg show`"+` having a handshake with every peer. Propagation is measured on the data plane: a prober in the
  changing node's namespace dials a TCP port on every other node every 20 ms and logs when each starts/stops
  answering; the delay runs from the command (reload / policy apply) to that moment, for grants and removals.
- **Gossip at scale (row 6).** Up to %d gossip.New nodes in this process on loopback addresses, production LAN
  timings, genuine records. Bandwidth from memberlist's own byte counters (go-metrics), per node on average.
- **Control plane (row 7).** The acl package's Go benchmarks (`+"`go test -run '^$' -bench ... -benchtime %s ./acl/`"+`),
  ns/op of the kernel variants for the applies.
- **Footprint (row 8).** One real daemon and simulated gossip members announcing genuine records in a second
  namespace on its underlay; RSS from /proc/PID/status, CPU from /proc/PID/stat over %s.

Ratios: measured / reference for comparisons, measured / target for absolute targets.`,
		WireGuardGoVersion, p.Runs, p.Secs, p.LatRounds, p.MeshNodes, p.GossipNodes, p.BenchTime, p.CPUWindow)
}
