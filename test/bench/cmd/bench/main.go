// Command bench runs segmesh's benchmark suite (data plane side by side with
// upstream wireguard-go and raw veth, crypto ceiling, mesh formation and
// propagation in network namespaces, gossip at scale in one process,
// control-plane cost from the acl Go benchmarks, daemon footprint,
// workloads (rows 10), allowed-flow observation (rows 11a-11d), quarantine
// and release on 10 nodes timed on the data plane (rows 12a, 12b)), prints
// one table and writes BENCHMARKS.md. It needs root (network namespaces,
// nftables). `make bench` runs the full suite, `make bench-quick` a reduced
// one (-quick).
//
// The same binary also serves as its own helper programs inside the
// namespaces (first argument "helper"): a TCP round-trip server and client,
// a reachability prober and a set of simulated gossip members.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// Params sizes the suite.
type Params struct {
	Mode          string
	Runs          int // throughput runs per configuration (alternated)
	Secs          int // seconds per iperf3 run
	LatRounds     int // alternated latency rounds
	PingsPerRound int // echo requests per round and tunnel
	RRPerRound    int // TCP round trips per round and tunnel
	MeshNodes     int // nodes of the propagation cluster
	PropRounds    int // tag/policy changes measured
	RevRounds     int // revocations measured (the last by public key)
	QuarCycles    int // quarantine/release cycles (rows 12)

	GossipNodes int // simulated in-process gossip nodes
	GossipBatch int // simulated nodes started at once
	// GossipPaced starts the next batch as soon as the last one has joined
	// and the CPU is calm, without waiting for it to be seen by every node
	// (the batches' alive broadcasts spread concurrently). Either way the
	// changes are timed once every node sees every node and the join
	// broadcasts have run out.
	GossipPaced bool
	GossipWait  time.Duration // bound on starting the simulated nodes until every node sees every node
	GossipSweep int           // idle cost measured at every multiple of this size on the way up
	// GossipProbe and GossipProbeTimeout relax the simulated nodes' failure
	// detector (0: production, 1 s / 500 ms).
	GossipProbe        time.Duration
	GossipProbeTimeout time.Duration
	GossipDrain        time.Duration // wait at most this for the join broadcasts to run out
	GossipIdle         time.Duration // idle bandwidth window
	GossipIdleProfile  string        // CPU profile of row 6's idle window ("" none)
	JoinWait           time.Duration // bound on starting the simulated nodes

	CPUWindow   time.Duration // idle CPU window
	BenchTime   string        // -benchtime of the acl benchmarks
	GoBenchTime string        // -benchtime of the Go benchmarks section
}

var (
	full  = Params{Mode: "full", Runs: 5, Secs: 5, LatRounds: 5, PingsPerRound: 200, RRPerRound: 2000, MeshNodes: 10, PropRounds: 3, RevRounds: 4, QuarCycles: 10, GossipNodes: 1000, GossipBatch: 50, GossipPaced: true, GossipWait: 6 * time.Minute, GossipSweep: 100000, GossipProbe: 5 * time.Second, GossipProbeTimeout: 3 * time.Second, GossipDrain: 300 * time.Second, GossipIdle: 20 * time.Second, CPUWindow: 30 * time.Second, JoinWait: 4 * time.Minute, BenchTime: "5x", GoBenchTime: "1s"}
	quick = Params{Mode: "quick", Runs: 3, Secs: 1, LatRounds: 2, PingsPerRound: 100, RRPerRound: 500, MeshNodes: 10, PropRounds: 1, RevRounds: 2, QuarCycles: 3, GossipNodes: 50, GossipBatch: 50, GossipWait: 30 * time.Second, GossipSweep: 1000, GossipDrain: 30 * time.Second, GossipIdle: 5 * time.Second, CPUWindow: 10 * time.Second, JoinWait: 30 * time.Second, BenchTime: "1x", GoBenchTime: "100ms"}
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "helper" {
		if err := runHelper(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		return
	}
	quickFlag := flag.Bool("quick", false, "reduced suite (under 3 minutes)")
	out := flag.String("out", "BENCHMARKS.md", "markdown report to write (\"\" = none)")
	only := flag.String("rows", "", "comma-separated row groups to run (dataplane,crypto,mesh,revocation,gossip,acl,footprint,workloads,observe,quarantine,gobench; 10a, 10b or 10c select workloads; 11 or observe the rows 11a-11d, 11a, 11b, 11c, 11d each of them; 12, 12a or 12b select quarantine); empty = all")
	gossipNodes := flag.Int("gossip-nodes", 0, "simulated gossip nodes of row 6 (0: the mode's default)")
	gossipProbe := flag.Duration("gossip-probe", -1, "row 6: probe interval of the simulated nodes (0: production 1s; default: the mode's)")
	gossipProbeTimeout := flag.Duration("gossip-probe-timeout", -1, "row 6: probe timeout of the simulated nodes (0: production 500ms; default: the mode's)")
	gossipIdleProfile := flag.String("gossip-idle-profile", "", "row 6: write a CPU profile of the idle window to this file")
	gossipSweep := flag.Int("gossip-sweep", 0, "row 6: measure the idle cost at every multiple of this many nodes on the way up (0: the mode's default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		defer stop()
	}
	p := full
	if *quickFlag {
		p = quick
	}
	if *gossipNodes > 0 {
		p.GossipNodes = *gossipNodes
	}
	if *gossipProbe >= 0 {
		p.GossipProbe = *gossipProbe
	}
	if *gossipProbeTimeout >= 0 {
		p.GossipProbeTimeout = *gossipProbeTimeout
	}
	p.GossipIdleProfile = *gossipIdleProfile
	if *gossipSweep > 0 {
		p.GossipSweep = *gossipSweep
	}
	if os.Geteuid() != 0 {
		log.Fatal("bench needs root (network namespaces, nftables)")
	}
	if prob := harness.NetnsProblem(); prob != "" {
		log.Fatalf("network namespaces unusable: %s", prob)
	}
	start := time.Now()
	loadStart := loadavg()
	want := map[string]bool{}
	obsWant := map[string]bool{} // rows of group observe (none: all)
	for _, g := range strings.Split(*only, ",") {
		switch g {
		case "":
		case "10", "10a", "10b", "10c": // one setup serves the three rows
			want["workloads"] = true
		case "11", "observe":
			want["observe"] = true
		case "11a", "11b", "11c", "11d":
			want["observe"] = true
			obsWant[g] = true
		case "12", "12a", "12b": // one set of cycles serves both rows
			want["quarantine"] = true
		default:
			want[g] = true
		}
	}
	run := func(name string) bool { return len(want) == 0 || want[name] }

	env, err := newEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer env.Close()

	var rows []Row
	var dp *dataplaneResult
	timed := func(name string, f func() []Row) {
		if !run(name) {
			return
		}
		t0 := time.Now()
		logf("== %s", name)
		r := f()
		logf("== %s took %s", name, time.Since(t0).Round(time.Second))
		for i := range r {
			r[i].Note = strings.TrimSpace(r[i].Note + fmt.Sprintf(" (group %s took %s)", name, time.Since(t0).Round(time.Second)))
			break
		}
		rows = append(rows, r...)
	}
	timed("dataplane", func() []Row {
		var r []Row
		dp, r = benchDataplane(env, p)
		return r
	})
	timed("crypto", func() []Row { return benchCrypto(p, dp) })
	timed("mesh", func() []Row { return benchMesh(env, p) })
	timed("revocation", func() []Row { return benchRevocation(env, p) })
	timed("gossip", func() []Row { return benchGossip(p) })
	timed("acl", func() []Row { return benchACL(env, p) })
	timed("footprint", func() []Row { return benchFootprint(env, p) })
	timed("workloads", func() []Row { return benchWorkloads(env, p) })
	timed("observe", func() []Row { return benchObserve(env, p, obsWant) })
	timed("quarantine", func() []Row { return benchQuarantine(env, p) })
	var sections []string
	if run("gobench") {
		t0 := time.Now()
		logf("== gobench")
		benches, errs := runGoBenches(env, p.GoBenchTime)
		logf("== gobench took %s", time.Since(t0).Round(time.Second))
		sections = append(sections, goBenchMarkdown(benches, errs, p.GoBenchTime))
	}

	elapsed := time.Since(start)
	fmt.Println()
	printTable(os.Stdout, rows)
	for _, sec := range sections {
		fmt.Printf("\n%s", sec)
	}
	fmt.Printf("\n%s suite took %s\n", p.Mode, elapsed.Round(time.Second))
	m := machine()
	m.Load = "start " + loadStart + ", end " + loadavg()
	m.Busy = busy(loadStart, m.CPUs) || busy(loadavg(), m.CPUs)
	fmt.Printf("load average: %s\n", m.Load)
	if m.Busy {
		fmt.Println("WARNING: the machine was busy with other work (load above the CPU count): figures are distorted")
	}
	if *out != "" {
		if err := writeMarkdown(*out, m, p.Mode, elapsed, rows, sections, methodText(p)); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("wrote %s\n", *out)
	}
}

func busy(load string, cpus int) bool {
	var l1 float64
	fmt.Sscan(load, &l1)
	return l1 > float64(cpus)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func errRow(id, what string, err error) []Row {
	logf("%s: %v", id, err)
	return []Row{{ID: id, What: what, Measured: "—", Verdict: Errored, Note: "error: " + err.Error()}}
}
