package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/cgroup"
	"github.com/segmesh/segmesh/cgroup/cgrouptest"
	"github.com/segmesh/segmesh/test/harness"
)

// Rows 10a-10c (issue 17, workloads): two real daemons, a with 32
// workloads declared by cgroup in 4 depths (levels 2-5, 8 each) below a
// cgroup tree made for the run, b the server. Egress is enforced at a.
//
// The policy: every identity (node and workloads) reaches b's benchmark
// ports; only the workload "api" (svc=api, the last of level 5) reaches
// tcp/7002. Row 10b restarts api's cgroup, row 10c dials 7002 from
// another workload.
const wlPolicy = `mode: enforce
segments:
  bench: {role: bench}
  api: {svc: api}
rules:
  - name: bench
    from: ["*"]
    to: [bench]
    ports: [tcp/5201-5210, tcp/7000-7001, icmp]
  - name: api
    from: [api]
    to: [bench]
    ports: [tcp/7002]
`

const (
	wlLevels   = 4 // levels 2..5
	wlPerLevel = 8
	wlAPI      = "w5-7"
	wlDenied   = "w5-0"
	wlPortAPI  = 7002
)

// wlTree is the run's cgroup tree: base (level 1), the workloads
// base/w2-i, base/a/w3-i, base/a/b/w4-i, base/a/b/c/w5-i, and nowl, a
// level-5 cgroup in no workload (base/a/b/c/nowl).
type wlTree struct {
	mount string
	base  string // relative to the mount, "/smb10-XXXX"
	rel   map[string]string
}

func newWLTree() (*wlTree, error) {
	mount, err := cgroup.Mount()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	t := &wlTree{mount: mount, base: "/smb10-" + hex.EncodeToString(b), rel: map[string]string{}}
	parent := t.base
	mk := func(rel string) error { return os.Mkdir(filepath.Join(mount, rel), 0o755) }
	if err := mk(parent); err != nil {
		return nil, err
	}
	for l := 2; l < 2+wlLevels; l++ {
		for i := range wlPerLevel {
			name := fmt.Sprintf("w%d-%d", l, i)
			t.rel[name] = parent + "/" + name
			if err := mk(t.rel[name]); err != nil {
				t.Close()
				return nil, err
			}
		}
		if l < 1+wlLevels {
			parent += "/" + string(rune('a'+l-2))
			if err := mk(parent); err != nil {
				t.Close()
				return nil, err
			}
		}
	}
	t.rel["nowl"] = parent + "/nowl"
	if err := mk(t.rel["nowl"]); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *wlTree) dir(name string) string { return filepath.Join(t.mount, t.rel[name]) }

// Close removes the tree, deepest first.
func (t *wlTree) Close() {
	var dirs []string
	_ = filepath.WalkDir(filepath.Join(t.mount, t.base), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := cgrouptest.Remove(dirs[i]); err != nil {
			logf("remove cgroup %s: %v", dirs[i], err)
		}
	}
}

// workloads is the config's workloads key.
func (t *wlTree) workloads() []map[string]any {
	var ws []map[string]any
	for l := 2; l < 2+wlLevels; l++ {
		for i := range wlPerLevel {
			name := fmt.Sprintf("w%d-%d", l, i)
			svc := name
			if name == wlAPI {
				svc = "api"
			}
			ws = append(ws, map[string]any{"name": name, "cgroup": t.rel[name], "tags": map[string]string{"svc": svc}})
		}
	}
	return ws
}

// inCgroup is argv run in namespace ns from cgroup dir (nsenter --net:
// ip netns exec would remount /sys and hide the cgroup mount).
func inCgroup(ns, dir string, argv ...string) *exec.Cmd {
	args := []string{"--net=/var/run/netns/" + ns, "--", "sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, dir}
	return exec.Command("nsenter", append(args, argv...)...)
}

type wlSetup struct {
	c      *harness.Cluster
	a, b   *harness.Node
	tree   *wlTree
	smB    string
	meshIf string
	procs  []*harness.Proc
}

func (s *wlSetup) Close() {
	for _, p := range s.procs {
		_ = p.Stop()
	}
	if s.c != nil {
		if err := s.c.Close(); err != nil {
			logf("cluster close: %v", err)
		}
	}
	if s.tree != nil {
		s.tree.Close()
	}
}

func newWLSetup(env *Env) (*wlSetup, error) {
	s := &wlSetup{}
	fail := func(err error) (*wlSetup, error) { s.Close(); return nil, err }
	var err error
	if s.tree, err = newWLTree(); err != nil {
		return fail(fmt.Errorf("cgroup tree: %w", err))
	}
	id := make([]byte, 2)
	_, _ = rand.Read(id)
	if s.c, err = harness.New(harness.Config{Binary: env.Segmesh, LogLevel: "info", Policy: wlPolicy, Prefix: "smb10" + hex.EncodeToString(id)}); err != nil {
		return fail(err)
	}
	tags := map[string]string{"role": "bench"}
	if s.b, err = s.c.AddNode(harness.NodeSpec{Name: "b", Tags: tags}); err != nil {
		return fail(err)
	}
	if s.a, err = s.c.AddNode(harness.NodeSpec{Name: "a", Tags: tags, Join: []string{s.b.GossipAddr()}, HostSys: true,
		Set: map[string]any{"workloads": s.tree.workloads()}}); err != nil {
		return fail(err)
	}
	for _, n := range []*harness.Node{s.b, s.a} {
		if err := n.Start(); err != nil {
			return fail(err)
		}
	}
	if _, err := harness.WaitMesh(30*time.Second, s.a, s.b); err != nil {
		return fail(fmt.Errorf("pair did not form: %w", err))
	}
	st, err := s.b.Status()
	if err != nil {
		return fail(err)
	}
	s.smB = st.Self.Address
	s.meshIf = s.a.Interface
	if err := waitWorkloads(s.a, 32, 20*time.Second); err != nil {
		return fail(err)
	}
	if _, err := harness.PingWithin(s.a, s.smB, 20*time.Second); err != nil {
		return fail(err)
	}
	pr, err := harness.Spawn(s.b.Namespace, filepath.Join(s.b.Dir, "rr-server.log"), env.Self, "helper", "rr-server",
		netip.AddrPortFrom(netip.MustParseAddr(s.smB), wlPortAPI).String())
	if err != nil {
		return fail(err)
	}
	s.procs = append(s.procs, pr)
	if err := pr.WaitOutput("ready", 10*time.Second); err != nil {
		return fail(err)
	}
	ip, err := harness.Spawn(s.b.Namespace, filepath.Join(s.b.Dir, "iperf3.log"), "iperf3", "-s", "-B", s.smB, "-p", "5201")
	if err != nil {
		return fail(err)
	}
	s.procs = append(s.procs, ip)
	time.Sleep(300 * time.Millisecond)
	return s, nil
}

// waitWorkloads waits until n lists want workloads, all active.
func waitWorkloads(n *harness.Node, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := api.NewClient(n.Socket).Status(context.Background())
		active := 0
		if err == nil {
			for _, w := range st.Self.Workloads {
				if w.State == api.WorkloadActive {
					active++
				}
			}
			if active == want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d workloads active (%v)", n.Name, active, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func benchWorkloads(env *Env, prm Params) []Row {
	s, err := newWLSetup(env)
	if err != nil {
		return errRow("10", "workloads", err)
	}
	defer s.Close()
	var rows []Row
	rows = append(rows, row10a(env, s, prm)...)
	rows = append(rows, row10b(env, s, prm)...)
	rows = append(rows, row10c(env, s, prm)...)
	return rows
}

var cgRuleRE = regexp.MustCompile(`socket cgroupv2 level (\d+) .*goto wl_(\S+)`)

// meshOutOrder lists mesh_out's cgroup rules: workload names in rule order
// and their levels.
func meshOutOrder(n *harness.Node) ([]string, map[string]int, error) {
	out, err := n.Exec("nft", "list", "chain", "inet", "segmesh", "mesh_out")
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s", err, out)
	}
	var names []string
	lv := map[string]int{}
	for _, m := range cgRuleRE.FindAllStringSubmatch(string(out), -1) {
		names = append(names, m[2])
		lv[m[2]], _ = strconv.Atoi(m[1])
	}
	return names, lv, nil
}

// egressJump turns a's egress check off (the output hook's jump to
// mesh_out removed, as before workloads) or back on.
func (s *wlSetup) egressJump(on bool) error {
	argv := []string{"nft", "flush", "chain", "inet", "segmesh", "output"}
	if on {
		argv = []string{"nft", "add", "rule", "inet", "segmesh", "output", "oifname", s.meshIf, "jump", "mesh_out"}
	}
	if out, err := s.a.Exec(argv...); err != nil {
		return fmt.Errorf("%v: %w: %s", argv, err, out)
	}
	return nil
}

func (s *wlSetup) egressOn() (bool, error) {
	out, err := s.a.Exec("nft", "list", "chain", "inet", "segmesh", "output")
	if err != nil {
		return false, fmt.Errorf("%w: %s", err, out)
	}
	return strings.Contains(string(out), "jump mesh_out"), nil
}

// iperfIn runs iperf3 from a in cgroup name and returns Gbit/s.
func (s *wlSetup) iperfIn(name string, secs int) (float64, error) {
	cmd := inCgroup(s.a.Namespace, s.tree.dir(name), "iperf3", "-c", s.smB, "-p", "5201", "-t", strconv.Itoa(secs), "-J")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("iperf3 in %s: %w: %.300s", name, err, out)
	}
	return parseIperf(out)
}

func row10a(env *Env, s *wlSetup, prm Params) []Row {
	const what = "throughput, 1 TCP stream, 32 workloads in 4 cgroup depths, egress on vs off, Gbit/s"
	order, lv, err := meshOutOrder(s.a)
	if err != nil {
		return errRow("10a", what, err)
	}
	if len(order) != 32 {
		return errRow("10a", what, fmt.Errorf("mesh_out has %d cgroup rules, want 32: %v", len(order), order))
	}
	// The deepest workload whose rule comes last among its level: the
	// most rules walked by a workload's packet.
	deep := ""
	for _, n := range order {
		if lv[n] == 1+wlLevels {
			deep = n
		}
	}
	pos := 0
	for i, n := range order {
		if n == deep {
			pos = i + 1
		}
	}
	var off, none, wl []float64
	// Many short alternated runs: the three configurations differ by a
	// few percent, less than this machine's drift between runs of one
	// configuration; the per-run ratios' median needs many pairs.
	runs, secs := wlRuns(prm), min(prm.Secs, 2)
	for r := range runs {
		// Rotate the order of the three configurations every run.
		cfgs := []string{"off", "nowl", "wl"}
		cfgs = append(cfgs[r%3:], cfgs[:r%3]...)
		for _, c := range cfgs {
			on := c != "off"
			if err := s.egressJump(on); err != nil {
				return errRow("10a", what, err)
			}
			name := "nowl"
			if c == "wl" {
				name = deep
			}
			g, err := s.iperfIn(name, secs)
			if err != nil {
				_ = s.egressJump(true)
				return errRow("10a", what, err)
			}
			if got, err := s.egressOn(); err != nil || got != on {
				_ = s.egressJump(true)
				return errRow("10a", what, fmt.Errorf("egress jump changed during the run (want on=%v, %v)", on, err))
			}
			if !on {
				if err := s.egressJump(true); err != nil {
					return errRow("10a", what, err)
				}
			}
			switch c {
			case "off":
				off = append(off, g)
			case "nowl":
				none = append(none, g)
			default:
				wl = append(wl, g)
			}
			logf("10a run %d %s (%s): %.2f Gbit/s", r+1, c, name, g)
		}
	}
	rNone, rWL := pairedRatio(none, off), pairedRatio(wl, off)
	streamDur := 60 * time.Second
	if prm.Mode == "quick" {
		streamDur = 10 * time.Second
	}
	tNone, onNone, offNone, err := s.toggledStream(env, "nowl", streamDur)
	if err != nil {
		return errRow("10a", what, err)
	}
	tWL, onWL, offWL, err := s.toggledStream(env, deep, streamDur)
	if err != nil {
		return errRow("10a", what, err)
	}
	qNone, qWL := median(tNone), median(tWL)
	logf("10a toggled: no workload %.3f (%d phases), %s %.3f (%d phases); iperf3 runs %.3f, %.3f", qNone, len(tNone), deep, qWL, len(tWL), rNone, rWL)
	return []Row{{
		ID: "10a", What: what,
		Measured: fmt.Sprintf("one stream, egress switched on/off every %s: sender in no workload (all 32 cgroup rules walked) on %.2f / off %.2f, in workload %s (level 5, rule %d of 32) on %.2f / off %.2f; iperf3 alternated runs: off %.2f, no workload %.2f, %s %.2f",
			togglePhase, onNone, offNone, deep, pos, onWL, offWL, median(off), median(none), deep, median(wl)),
		Target: "≥ 0.97 × egress off", Ratio: fmt.Sprintf("%.3f (no workload), %.3f (%s)", qNone, qWL, deep), Verdict: verdict(min(qNone, qWL) >= 0.97),
		Note: fmt.Sprintf("two real daemons (the row's own pair, policy enforced), a with 32 workloads declared by cgroup (8 each at levels 2, 3, 4, 5 below a cgroup tree %s made for the run; %d cgroup rules in mesh_out, deepest level first); senders started in a cgroup with nsenter --net and `echo $$ > cgroup.procs`: "+
			"in a level-5 cgroup that is no workload (it has ancestors at every level, so every rule's lookup is real, then out_node) and in %s. \"Egress off\" removes the output hook's `oifname %s jump mesh_out` (nft flush chain inet segmesh output; restored and checked: no egress check at all, as before workloads). "+
			"The result: one TCP stream per sender for %s (this program's stream-send / stream-recv helpers; b counts the bytes per 10 ms) while the bench switches the jump on and off every %s; each on phase against the mean of the off phases on either side (first second and 100 ms after each switch not counted), median of %d and %d such ratios (quartiles %s and %s): "+
			"adjacent half-seconds share the machine's state, which separate runs do not on this shared 2-core machine. "+
			"For reference, %d separate alternated iperf3 -t %d runs (the order of off / no workload / %s rotating): per-run ratio medians %.3f and %.3f, quartiles %s and %s — runs of one configuration differ by ±20%% here, so these cannot resolve 3%%.",
			s.tree.base, len(order), deep, s.meshIf, streamDur, togglePhase, len(tNone), len(tWL), q3(tNone), q3(tWL),
			runs, secs, deep, rNone, rWL, quartiles(none, off), quartiles(wl, off)),
	}}
}

// q3 is "q1 / median / q3" of v.
func q3(v []float64) string {
	return fmt.Sprintf("%.3f / %.3f / %.3f", percentile(v, 25), median(v), percentile(v, 75))
}

// dialHelper runs the bench helper in cgroup name of a.
func (s *wlSetup) helperIn(env *Env, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := inCgroup(s.a.Namespace, s.tree.dir(name), append([]string{env.Self, "helper"}, args...)...)
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("helper %v in %s: %w: %s", args, name, err, out)
	}
	return out, nil
}

func row10b(env *Env, s *wlSetup, prm Params) []Row {
	const what = "unit restart (cgroup removed and made again, new id) → workload allowed again, s"
	target := netip.AddrPortFrom(netip.MustParseAddr(s.smB), wlPortAPI).String()
	// Allowed before, refused from another workload.
	if out, err := s.helperIn(env, wlAPI, "until-ok", target, "2ms", "5s"); err != nil {
		return errRow("10b", what, fmt.Errorf("api does not reach %s before the restarts: %w", target, err))
	} else if !strings.HasPrefix(string(out), "ok") {
		return errRow("10b", what, fmt.Errorf("api before the restarts: %s", out))
	}
	rounds := 20
	if prm.Mode == "quick" {
		rounds = 5
	}
	dir := s.tree.dir(wlAPI)
	var d, res []float64
	noRefusal := 0
	for r := range rounds {
		// Between restarts a random pause, so the restarts fall anywhere
		// in the watcher's 500 ms rescan period.
		n, _ := rand.Int(rand.Reader, big.NewInt(500))
		time.Sleep(200*time.Millisecond + time.Duration(n.Int64())*time.Millisecond)
		took, gap, err := s.restartOnce(env, dir, target)
		if err == nil && gap == took {
			noRefusal++
		}
		if err != nil {
			return errRow("10b", what, fmt.Errorf("round %d: %w", r+1, err))
		}
		d = append(d, took.Seconds())
		res = append(res, gap.Seconds())
		logf("10b round %d: allowed again after %v (last refusal %v before)", r+1, took.Round(time.Millisecond), gap.Round(100*time.Microsecond))
	}
	p50, p95, mx := percentile(d, 50), percentile(d, 95), percentile(d, 100)
	return []Row{{
		ID: "10b", What: what,
		Measured: fmt.Sprintf("p50 %.3f, p95 %.3f, max %.3f (%d restarts)", p50, p95, mx, len(d)),
		Target:   "p95 ≤ 1 s", Ratio: fmt.Sprintf("%.2f of target", p95), Verdict: verdict(p95 <= 1),
		Note: fmt.Sprintf("the real daemon of row 10a (32 workloads; it follows cgroups by inotify and a 500 ms rescan, then rewrites mesh_out); workload %s is the only identity allowed to b's tcp/%d. "+
			"Each round (after a random 200-700 ms pause) starts a prober (this program's until-ok helper, nsenter --net, in the level-5 cgroup in no workload) that dials b:%d every 2 ms, a new socket each time, and is refused (the node's identity); "+
			"then the workload's cgroup is removed and made again at once (a new cgroup id, as a unit restart) and the prober moved into it (its pid written to the new cgroup.procs; its next sockets are in the new cgroup and refused until the daemon has followed it); "+
			"delay from the mkdir to the first accepted connection. Resolution: the last refused attempt after the mkdir started a median %.1f ms before the accepted one (%d of %d rounds had no refused attempt after the move: their delay is an upper bound).",
			wlAPI, wlPortAPI, wlPortAPI, median(res)*1000, noRefusal, len(d)),
	}}
}

func row10c(env *Env, s *wlSetup, prm Params) []Row {
	const what = "denied connect at the sender → the local process's error, ms"
	target := netip.AddrPortFrom(netip.MustParseAddr(s.smB), wlPortAPI).String()
	n := 1000
	if prm.Mode == "quick" {
		n = 200
	}
	times := func(name, want string) ([]float64, error) {
		out, err := s.helperIn(env, name, "dial-times", target, strconv.Itoa(n), want)
		if err != nil {
			return nil, err
		}
		var v []float64
		for _, l := range strings.Fields(string(out)) {
			f, err := strconv.ParseFloat(l, 64)
			if err != nil {
				return nil, fmt.Errorf("dial-times: %q", l)
			}
			v = append(v, f)
		}
		if len(v) != n {
			return nil, fmt.Errorf("dial-times: %d of %d samples", len(v), n)
		}
		return v, nil
	}
	den, err := times(wlDenied, "refused")
	if err != nil {
		return errRow("10c", what, err)
	}
	nowl, err := times("nowl", "refused")
	if err != nil {
		return errRow("10c", what, err)
	}
	ok, err := times(wlAPI, "ok")
	if err != nil {
		return errRow("10c", what, err)
	}
	p95 := max(percentile(den, 95), percentile(nowl, 95))
	return []Row{{
		ID: "10c", What: what,
		Measured: fmt.Sprintf("from workload %s p50 %.3f p95 %.3f max %.3f; from no workload p50 %.3f p95 %.3f max %.3f; (allowed connect from %s, for scale: p50 %.3f p95 %.3f)",
			wlDenied, percentile(den, 50), percentile(den, 95), percentile(den, 100),
			percentile(nowl, 50), percentile(nowl, 95), percentile(nowl, 100),
			wlAPI, percentile(ok, 50), percentile(ok, 95)),
		Target: "p95 ≤ 10 ms", Ratio: fmt.Sprintf("%.3f of target", p95/10), Verdict: verdict(p95 <= 10),
		Note: fmt.Sprintf("the pair of row 10a; %d TCP connects to b:%d (allowed only to workload %s) one after the other, each a new socket, by a Go process (this program's dial-times helper, net.Dialer with a 1 s timeout) started in the cgroup of workload %s (level 5) and in the level-5 cgroup in no workload; "+
			"time from the Dial call until it returns ECONNREFUSED (every sample had to be ECONNREFUSED: the egress chain's tcp reset, not a timeout). For scale, the same from %s, allowed: the full handshake with b through the tunnel.",
			n, wlPortAPI, wlAPI, wlDenied, wlAPI),
	}}
}

// restartOnce recreates cgroup dir with a prober waiting in the cgroup in
// no workload, moves the prober into the new cgroup and returns the delay
// from the mkdir until its first accepted connection, and the time between
// its last refused attempt and that connection.
func (s *wlSetup) restartOnce(env *Env, dir, target string) (time.Duration, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := inCgroup(s.a.Namespace, s.tree.dir("nowl"), env.Self, "helper", "until-ok", "-expect-refused", target, "2ms", "10s")
	cmd := exec.CommandContext(ctx, c.Path, c.Args[1:]...)
	var errb strings.Builder
	cmd.Stderr = &errb
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(outp)
	if !sc.Scan() || sc.Text() != "refused" {
		_ = cmd.Wait()
		return 0, 0, fmt.Errorf("prober: %q %s", sc.Text(), errb.String())
	}
	oldID, _ := cgroup.ID(dir)
	if err := cgrouptest.Remove(dir); err != nil {
		return 0, 0, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return 0, 0, fmt.Errorf("move the prober: %w", err)
	}
	if newID, _ := cgroup.ID(dir); newID == oldID {
		return 0, 0, fmt.Errorf("cgroup id unchanged (%d)", newID)
	}
	if !sc.Scan() {
		_ = cmd.Wait()
		return 0, 0, fmt.Errorf("prober: no result: %s", errb.String())
	}
	// "ok LAST OK N"
	f := strings.Fields(sc.Text())
	if len(f) != 4 || f[0] != "ok" {
		return 0, 0, fmt.Errorf("prober: %q", sc.Text())
	}
	last, _ := strconv.ParseInt(f[1], 10, 64)
	ok, _ := strconv.ParseInt(f[2], 10, 64)
	// last < t0: no refusal after the move (the daemon was faster than
	// the prober's next attempt); the delay is then an upper bound.
	return time.Unix(0, ok).Sub(t0), time.Duration(ok - max(last, t0.UnixNano())), nil
}

// quartiles of the per-run ratios a[i]/b[i], "q1 / median / q3".
func quartiles(a, b []float64) string {
	var r []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			r = append(r, a[i]/b[i])
		}
	}
	return fmt.Sprintf("%.3f / %.3f / %.3f", percentile(r, 25), median(r), percentile(r, 75))
}

// wlRuns is row 10a's number of alternated iperf3 runs.
func wlRuns(p Params) int { return 2 * p.Runs }

// togglePhase is how long egress stays on or off in toggledStream.
const togglePhase = 500 * time.Millisecond

// toggledStream sends one TCP stream (this program's stream-send helper)
// from a's cgroup name to b for d while the egress check is switched on and
// off every togglePhase; b's receiver counts the bytes per 10 ms. Each on
// phase is compared with the mean of the off phases on either side of it
// (the first second, and 100 ms after every switch, are not counted). It
// returns the per-phase ratios and the on and off Gbit/s (medians).
func (s *wlSetup) toggledStream(env *Env, name string, d time.Duration) ([]float64, float64, float64, error) {
	addr := netip.AddrPortFrom(netip.MustParseAddr(s.smB), 7001).String()
	sender := func(argv ...string) *exec.Cmd { return inCgroup(s.a.Namespace, s.tree.dir(name), argv...) }
	return toggledStream(env, s.b.Namespace, addr, name, sender, s.egressJump, d)
}

// toggledStream sends one TCP stream (this program's stream-send helper,
// run by sender) to addr, received by stream-recv in namespace recvNS,
// for d while toggle switches the measured feature on and off every
// togglePhase (on at the start; toggle(false) then toggle(true) first, so
// a feature made of one added rule is there exactly once); the receiver
// counts the bytes per 10 ms. See wlSetup.toggledStream for the result.
func toggledStream(env *Env, recvNS, addr, name string, sender func(argv ...string) *exec.Cmd, toggle func(on bool) error, d time.Duration) ([]float64, float64, float64, error) {
	const bucket = 10 * time.Millisecond
	const margin = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	recv := exec.CommandContext(ctx, "ip", "netns", "exec", recvNS, env.Self, "helper", "stream-recv", addr, bucket.String())
	var rerr strings.Builder
	recv.Stderr = &rerr
	rout, err := recv.StdoutPipe()
	if err != nil {
		return nil, 0, 0, err
	}
	if err := recv.Start(); err != nil {
		return nil, 0, 0, err
	}
	defer func() { _ = recv.Process.Kill(); _ = recv.Wait() }()
	sc := bufio.NewScanner(rout)
	if !sc.Scan() || sc.Text() != "ready" {
		return nil, 0, 0, fmt.Errorf("stream-recv: %q %s", sc.Text(), rerr.String())
	}
	c := sender(env.Self, "helper", "stream-send", addr, d.String())
	send := exec.CommandContext(ctx, c.Path, c.Args[1:]...)
	var sout strings.Builder
	send.Stdout, send.Stderr = &sout, &sout
	// Exactly one jump (egressJump(true) adds one).
	if err := toggle(false); err != nil {
		return nil, 0, 0, err
	}
	if err := toggle(true); err != nil {
		return nil, 0, 0, err
	}
	start := time.Now()
	if err := send.Start(); err != nil {
		return nil, 0, 0, err
	}
	sent := make(chan error, 1)
	go func() { sent <- send.Wait() }()
	type phase struct {
		on         bool
		start, end int64
	}
	var phases []phase
	on := true
	cur := phase{on: true, start: start.UnixNano()}
	var serr error
loop:
	for {
		select {
		case serr = <-sent:
			break loop
		case <-time.After(togglePhase):
		}
		t0 := time.Now().UnixNano()
		on = !on
		if err := toggle(on); err != nil {
			_ = toggle(true)
			return nil, 0, 0, err
		}
		cur.end = t0
		phases = append(phases, cur)
		cur = phase{on: on, start: time.Now().UnixNano()}
	}
	if !on {
		if err := toggle(true); err != nil {
			return nil, 0, 0, err
		}
	}
	if serr != nil {
		return nil, 0, 0, fmt.Errorf("stream-send in %s: %w: %s", name, serr, sout.String())
	}
	type bk struct{ t, n int64 }
	var bks []bk
	for sc.Scan() {
		var b bk
		if _, err := fmt.Sscan(sc.Text(), &b.t, &b.n); err == nil {
			bks = append(bks, b)
		}
	}
	_ = recv.Wait()
	rate := func(p phase) float64 {
		var n, k int64
		for _, b := range bks {
			if b.t >= p.start+int64(margin) && b.t+int64(bucket) <= p.end {
				n += b.n
				k++
			}
		}
		if k == 0 {
			return 0
		}
		return float64(n) * 8 / (float64(k) * bucket.Seconds()) / 1e9
	}
	var ratios, onR, offR []float64
	for i := 1; i+1 < len(phases); i++ {
		p := phases[i]
		if !p.on || p.start < start.Add(time.Second).UnixNano() {
			continue
		}
		a, b, x := rate(phases[i-1]), rate(phases[i+1]), rate(p)
		if a > 0 && b > 0 && x > 0 {
			ratios = append(ratios, x/((a+b)/2))
			onR = append(onR, x)
		}
	}
	for i, p := range phases {
		if !p.on && i > 0 && p.start >= start.Add(time.Second).UnixNano() {
			if r := rate(p); r > 0 {
				offR = append(offR, r)
			}
		}
	}
	if len(ratios) == 0 {
		return nil, 0, 0, fmt.Errorf("toggled stream from %s: no phase measured (%d phases, %d buckets)", name, len(phases), len(bks))
	}
	return ratios, median(onR), median(offR), nil
}
