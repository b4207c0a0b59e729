package main

import (
	"bufio"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmesh/segmesh/node"
	"github.com/segmesh/segmesh/test/harness"
)

// daemonGossipLabel is node.GossipLabel (the daemon's memberlist label).
const daemonGossipLabel = "segmesh"

// simMembers runs -n genuine gossip members on -addr (ports from -port),
// seeded with -seed, keyed with the first key of -keyfile, until SIGTERM.
// With -peer (the daemon's public key) and -endpoint (its WireGuard
// address), each member also runs a WireGuard device on its announced port
// with the daemon as peer (see startSimWG).
func simMembers(args []string) error {
	fs := flag.NewFlagSet("sim-members", flag.ContinueOnError)
	n := fs.Int("n", 1, "members")
	addr := fs.String("addr", "", "bind address")
	port := fs.Int("port", 8000, "first gossip port")
	wgPort := fs.Int("wgport", 52000, "first announced WireGuard port")
	seed := fs.String("seed", "", "seed host:port")
	keyfile := fs.String("keyfile", "", "cluster key file (base64, first line)")
	peer := fs.String("peer", "", "daemon WireGuard public key (base64); empty: no WireGuard")
	endpoint := fs.String("endpoint", "", "daemon WireGuard endpoint host:port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(*keyfile)
	if err != nil {
		return err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return fmt.Errorf("cluster key: %w", err)
	}
	var nodes []*simNode
	if *peer == "" {
		nodes, err = startSimNodes(*n, key, daemonGossipLabel,
			func(int) string { return *addr }, func(i int) int { return *port + i }, func(i int) int { return *wgPort + i },
			[]string{*seed}, map[string]string{"role": "sim"})
	} else {
		var wgs []*simWG
		nodes, wgs, err = startSimWGNodes(*n, key, daemonGossipLabel, *addr, func(i int) int { return *port + i },
			func(i int) int { return *wgPort + i }, []string{*seed}, map[string]string{"role": "sim"}, *peer, *endpoint)
		defer closeSimWG(wgs)
	}
	defer shutdownSim(nodes)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

// procStat returns utime+stime (clock ticks) of pid.
func procStat(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(s[i+2:]) // f[0] = state (field 3); utime = field 14, stime = 15
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}

// memKB is a process's resident memory from /proc/PID/status, in KiB:
// VmRSS = RssAnon (private: Go heap, stacks, runtime) + RssFile (the mapped
// executable and libraries, shared page cache) + RssShmem.
type memKB struct {
	RSS, Anon, File int64
}

func memStatus(pid int) (memKB, error) {
	var m memKB
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	found := false
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var kb int64
		fmt.Sscan(v, &kb)
		switch k {
		case "VmRSS":
			m.RSS, found = kb, true
		case "RssAnon":
			m.Anon = kb
		case "RssFile":
			m.File = kb
		}
	}
	if !found {
		return m, errors.New("no VmRSS")
	}
	return m, nil
}

// rssOver samples pid's memory every second for window and returns the
// sample of median VmRSS and the highest one: a steady-state figure that a
// single sample at a collection's peak or trough would miss.
func rssOver(pid int, window time.Duration) (med, high memKB, err error) {
	var samples []memKB
	for end := time.Now().Add(window); ; {
		m, err := memStatus(pid)
		if err != nil {
			return med, high, err
		}
		samples = append(samples, m)
		if time.Now().After(end) {
			break
		}
		time.Sleep(time.Second)
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i].RSS < samples[j].RSS })
	return samples[len(samples)/2], samples[len(samples)-1], nil
}

func (m memKB) String() string {
	return fmt.Sprintf("%.1f MB (private %.1f + executable/libraries %.1f)", float64(m.RSS)/1024, float64(m.Anon)/1024, float64(m.File)/1024)
}

func benchFootprint(env *Env, prm Params) []Row {
	c, err := harness.New(harness.Config{Binary: env.Segmesh, LogLevel: "info", Policy: benchPolicy})
	if err != nil {
		return errRow("8", "footprint", err)
	}
	var procs []*harness.Proc
	defer func() {
		for _, p := range procs {
			_ = p.Stop()
		}
		if err := c.Close(); err != nil {
			logf("cluster close: %v", err)
		}
	}()
	rows, err := measureFootprint(env, prm, c, &procs)
	if err != nil {
		c.Report(os.Stderr)
		return append(rows, errRow("8", "footprint", err)...)
	}
	return rows
}

func upPeers(n *harness.Node) (int, error) {
	st, err := n.Status()
	if err != nil {
		return 0, err
	}
	up := 0
	for _, p := range st.Peers {
		if p.State == harness.StateUp {
			up++
		}
	}
	return up, nil
}

// gcNote says how the daemon was built and which garbage-collector target
// it ran with (it inherits the bench's environment).
func gcNote() string {
	const build = "The daemon is built as `make package` ships it (harness.BuildPackage: CGO_ENABLED=0, -trimpath), a static executable with no libc mapped; "
	if v, ok := os.LookupEnv("GOGC"); ok {
		return build + "GOGC=" + v + " from the environment."
	}
	return build + fmt.Sprintf("GOGC=%d (the daemon's default, node.DefaultGCPercent).", node.DefaultGCPercent)
}

// handshakes counts the daemon's WireGuard peers with a completed handshake.
func handshakes(n *harness.Node) (int, error) {
	dev, err := n.WireGuard()
	if err != nil {
		return 0, err
	}
	done := 0
	for _, p := range dev.Peers {
		if !p.LatestHandshake.IsZero() {
			done++
		}
	}
	return done, nil
}

func measureFootprint(env *Env, prm Params, c *harness.Cluster, procs *[]*harness.Proc) ([]Row, error) {
	d, err := c.AddNode(harness.NodeSpec{Name: "d", Tags: map[string]string{"role": "bench"}})
	if err != nil {
		return nil, err
	}
	sim, err := c.AddNode(harness.NodeSpec{Name: "sim", Bare: true})
	if err != nil {
		return nil, err
	}
	if err := d.Start(); err != nil {
		return nil, err
	}
	pid := 0
	if err := harness.WaitFor(10*time.Second, func() error { pid, err = daemonPID(d.ConfigPath); return err }); err != nil {
		return nil, err
	}
	dpub, err := d.PublicKey()
	if err != nil {
		return nil, err
	}
	var dwg *harness.WGDevice
	if err := harness.WaitFor(10*time.Second, func() error { dwg, err = d.WireGuard(); return err }); err != nil {
		return nil, err
	}
	dEndpoint := netip.AddrPortFrom(d.Addr, uint16(dwg.ListenPort)).String()
	spawn := func(n, port, wgport int) error {
		p, err := harness.Spawn(sim.Namespace, filepath.Join(sim.Dir, fmt.Sprintf("sim-%d.log", port)), env.Self, "helper", "sim-members",
			"-n", strconv.Itoa(n), "-addr", sim.Addr.String(), "-port", strconv.Itoa(port), "-wgport", strconv.Itoa(wgport),
			"-seed", d.GossipAddr(), "-keyfile", d.ClusterKeyPath(), "-peer", dpub, "-endpoint", dEndpoint)
		if err != nil {
			return err
		}
		*procs = append(*procs, p)
		return p.WaitOutput("ready", 60*time.Second)
	}
	// waitPeers waits (bounded by prm.JoinWait, so a loaded machine cannot
	// stall the suite) until the daemon lists want peers up; it returns how
	// many it saw.
	waitPeers := func(want int) (int, error) {
		seen := 0
		err := harness.WaitFor(prm.JoinWait, func() error {
			up, err := upPeers(d)
			if err != nil {
				return err
			}
			seen = up
			if up < want {
				return fmt.Errorf("daemon sees %d/%d peers up", up, want)
			}
			return nil
		})
		if err != nil && seen == 0 {
			return 0, err
		}
		if err != nil {
			logf("footprint: %v; measuring with %d peers", err, seen)
		}
		return seen, nil
	}
	// waitHandshakes waits (bounded by prm.JoinWait) until want peers
	// completed a WireGuard handshake with the daemon, as in a healthy mesh
	// (an unanswered peer keeps a staged 64 KiB keepalive in wireguard-go);
	// it returns how many did.
	waitHandshakes := func(want int) int {
		seen := 0
		err := harness.WaitFor(prm.JoinWait, func() error {
			hs, err := handshakes(d)
			if err != nil {
				return err
			}
			seen = hs
			if hs < want {
				return fmt.Errorf("%d/%d peers completed a handshake", hs, want)
			}
			return nil
		})
		if err != nil {
			logf("footprint: %v; measuring anyway", err)
		}
		return seen
	}
	// 49 simulated peers: idle CPU.
	if err := spawn(49, 8000, 52000); err != nil {
		return nil, err
	}
	seen50, err := waitPeers(49)
	if err != nil {
		return nil, err
	}
	hs50 := waitHandshakes(seen50)
	time.Sleep(3 * time.Second) // settle the join burst
	tk := float64(100)          // USER_HZ on Linux
	c0, err := procStat(pid)
	if err != nil {
		return nil, err
	}
	w0 := time.Now()
	time.Sleep(prm.CPUWindow)
	c1, err := procStat(pid)
	if err != nil {
		return nil, err
	}
	cpu := float64(c1-c0) / tk / time.Since(w0).Seconds() * 100
	mem50, _ := memStatus(pid)
	rows := []Row{{ID: "8b", What: "daemon idle CPU with 50 peers", Measured: fmt.Sprintf("%.2f%% of a core (%d peers up)", cpu, seen50+1),
		Target: "≤ 1% of a core", Ratio: fmt.Sprintf("%.2f of target", cpu), Verdict: verdict(cpu <= 1 && seen50 == 49),
		Note: fmt.Sprintf("one real daemon (policy enforced) and 49 simulated gossip members (genuine records through gossip.New, encrypted with its cluster key) in another namespace of its underlay, each also running a userspace WireGuard device (wireguard-go) on its announced port with the daemon as peer (%d/%d handshakes completed, keepalives as configured); utime+stime from /proc/PID/stat over %s after the join settled.", hs50, seen50, prm.CPUWindow)}}
	// 150 more: RSS with 200.
	if err := spawn(150, 8100, 52100); err != nil {
		return rows, err
	}
	seen200, err := waitPeers(199)
	if err != nil {
		return rows, err
	}
	hs200 := waitHandshakes(seen200)
	time.Sleep(3 * time.Second) // settle the join burst
	mem, memMax, err := rssOver(pid, prm.CPUWindow)
	if err != nil {
		return rows, err
	}
	mb := float64(mem.RSS) / 1024
	dev, _ := d.WireGuard()
	wgPeers := 0
	if dev != nil {
		wgPeers = len(dev.Peers)
	}
	// The same 199 peers on standalone upstream wireguard-go (the daemon
	// stopped): the userspace device's own share of 8a.
	floor, floorMax, fhs, ferr := wireguardFloor(env, prm, d, c.Prefix()+"fw", procs)
	floorRow := Row{ID: "8c", What: "standalone upstream wireguard-go RSS with the same 199 peers", Verdict: Info}
	if ferr != nil {
		floorRow.Measured, floorRow.Note = "n/a", ferr.Error()
	} else {
		floorRow.Measured = fmt.Sprintf("%.1f MB (%d/%d handshakes); segmesh above it: %.1f MB", float64(floor.RSS)/1024, fhs, wgPeers, mb-float64(floor.RSS)/1024)
		floorRow.Note = fmt.Sprintf("after 8a the daemon is stopped and the wireguard-go of rows 1–3 (%s, its default GOGC 100) runs in its namespace with the daemon's `wg showconf` (its key, port and peers); median VmRSS over %s once the simulated peers have handshaken with it again, as for 8a: %s (highest %s), against the daemon's %s. The difference is what segmesh itself adds (gossip, policy, nftables, API, metrics, and its larger executable: its file-backed pages are the executable's, mapped almost whole).", WireGuardGoVersion, prm.CPUWindow, floor, floorMax, mem)
	}
	rows = append([]Row{{ID: "8a", What: "daemon RSS with 200 peers (1 real + 199 simulated)", Measured: fmt.Sprintf("%.1f MB with %d peers up (with %d: %.1f MB)", mb, seen200+1, seen50+1, float64(mem50.RSS)/1024),
		Target: "≤ 40 MB", Ratio: fmt.Sprintf("%.2f of target", mb/40), Verdict: verdict(mb <= 40 && seen200 == 199),
		Note: fmt.Sprintf("median VmRSS of the daemon, sampled every second over %s, once its status lists 199 peers up (or after %s with fewer: then FAIL, not the asked size) and 3 s more; %d WireGuard peers configured, %d with a completed handshake (the simulated members answer WireGuard, see 8b). With 200: %s, highest %s; with 50 (one sample): %s. %s",
			prm.CPUWindow, prm.JoinWait, wgPeers, hs200, mem, memMax, mem50, gcNote())}}, rows...)
	rows = append(rows, floorRow)
	return rows, nil
}
