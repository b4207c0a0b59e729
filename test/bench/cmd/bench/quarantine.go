package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// Rows 12a and 12b (issue 19, quarantine): `segmesh quarantine X` and
// `segmesh release X` through n0's control socket on a mesh of 10 real
// nodes in enforce mode, timed on the data plane as row 5d: every node runs
// a prober every 20 ms (40 ms timeout), the nine others dialling X and X
// dialling all nine, from the command's start until each node's probes flip.

// quarPolicy: every node may reach every node on tcp/7000 (the probes) and
// by ICMP; segment ops is the --allow-from of the quarantine.
const quarPolicy = `mode: enforce
segments:
  ops: {role: ops}
rules:
  - name: probes
    from: ["*"]
    to: ["*"]
    ports: [tcp/7000, icmp]
`

// quarPort is the probed port (rr-server on every node).
const quarPort = 7000

// probeKey names one probe: the prober log it is in and its address.
type probeKey struct{ log, addr string }

// lastFlip returns, for the probe's events after t0, the time of the
// transition into state that the probe is still in (the final one), and
// whether the probe is in state now. Flaps before it (a dial lost to the
// load) do not count; a flap after the real flip delays the figure, never
// advances it.
func lastFlip(ev []probeEvent, addr, state string, t0 time.Time) (time.Time, bool) {
	var last *probeEvent
	for i := range ev {
		e := &ev[i]
		if e.addr == addr && !e.at.Before(t0) {
			last = e
		}
	}
	if last == nil || last.state != state {
		return time.Time{}, false
	}
	return last.at, true
}

// waitFlips waits until every node's probes are in state (the last event
// after t0 of each) and stay so for settle; it returns each node's delay:
// the latest of its probes' flips.
func waitFlips(nodes map[string][]probeKey, state string, t0 time.Time, timeout, settle time.Duration) (map[string]float64, error) {
	read := func() (map[string]float64, error) {
		logs := map[string][]probeEvent{}
		out := map[string]float64{}
		for node, probes := range nodes {
			var worst time.Duration
			for _, p := range probes {
				ev, ok := logs[p.log]
				if !ok {
					var err error
					if ev, err = readProbeLog(p.log); err != nil {
						return nil, err
					}
					logs[p.log] = ev
				}
				at, ok := lastFlip(ev, p.addr, state, t0)
				if !ok {
					return nil, fmt.Errorf("%s: probe of %s not %s yet", node, p.addr, state)
				}
				worst = max(worst, at.Sub(t0))
			}
			out[node] = worst.Seconds()
		}
		return out, nil
	}
	var out map[string]float64
	err := harness.WaitFor(timeout, func() error {
		var err error
		if out, err = read(); err != nil {
			return err
		}
		time.Sleep(settle)
		again, err := read()
		if err != nil {
			return err
		}
		for k, v := range out {
			if again[k] != v {
				return fmt.Errorf("%s: probes flapped", k)
			}
		}
		return nil
	})
	return out, err
}

// daemonEvent is a log line of a daemon: its time and message.
type daemonEvent struct {
	at  time.Time
	msg string
}

var (
	logTimeRE = regexp.MustCompile(`(?:^|\s)time=(\S+)`)
	logMsgRE  = regexp.MustCompile(`(?:^|\s)msg="([^"]*)"`)
)

// daemonEvents reads the daemon's text log lines whose message is one of
// msgs.
func daemonEvents(path string, msgs ...string) ([]daemonEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []daemonEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		m := logMsgRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		want := false
		for _, s := range msgs {
			want = want || m[1] == s
		}
		if !want {
			continue
		}
		tm := logTimeRE.FindStringSubmatch(l)
		if tm == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, tm[1])
		if err != nil {
			continue
		}
		out = append(out, daemonEvent{at, m[1]})
	}
	return out, sc.Err()
}

// firstAfter is the delay from t0 to the first event of msgs in [t0, end)
// (end zero: no bound), or -1.
func firstAfter(ev []daemonEvent, t0, end time.Time, msgs ...string) float64 {
	for _, e := range ev {
		if e.at.Before(t0) || (!end.IsZero() && !e.at.Before(end)) {
			continue
		}
		for _, m := range msgs {
			if e.msg == m {
				return e.at.Sub(t0).Seconds()
			}
		}
	}
	return -1
}

// The daemon's log messages (node/quarantine.go) the rows time.
const (
	msgQuarantined = "node quarantined"
	msgSelfQuar    = "THIS NODE IS QUARANTINED: mesh traffic only from the allowed segments (forensics)"
	msgReleased    = "node released from quarantine"
	msgCutApplied  = "conntrack entries of quarantined addresses deleted"
	msgCutNotDel   = "conntrack entries of quarantined addresses not deleted; the quarantine rules drop their packets anyway"
)

type quarCycle struct {
	tQ, tR  time.Time     // commands' starts
	cmdQ    time.Duration // command durations
	cmdR    time.Duration
	cut     map[string]float64 // node → s until its probes are all down
	back    map[string]float64 // node → s until its probes are all up again
	forensN int                // down events of ops→X during the quarantine
}

func benchQuarantine(env *Env, prm Params) []Row {
	c, err := harness.New(harness.Config{Binary: env.Segmesh, LogLevel: "info", Policy: quarPolicy})
	if err != nil {
		return errRow("12", "quarantine", err)
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
	rows, err := measureQuarantine(env, prm, c, &procs)
	if err != nil {
		c.Report(os.Stderr)
		return errRow("12a", "quarantine → X cut on all nodes / release", err)
	}
	return rows
}

func measureQuarantine(env *Env, prm Params, c *harness.Cluster, procs *[]*harness.Proc) ([]Row, error) {
	// n0 (role ops: the operator's node, the --allow-from) n1..n8 servers,
	// X = n9, a server.
	var nodes []*harness.Node
	for i := 0; i < prm.MeshNodes; i++ {
		role := "server"
		if i == 0 {
			role = "ops"
		}
		spec := harness.NodeSpec{Name: fmt.Sprintf("n%d", i), Tags: map[string]string{"role": role}}
		if i > 0 {
			spec.Join = []string{nodes[0].GossipAddr()}
		}
		n, err := c.AddNode(spec)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	ops, x, others := nodes[0], nodes[len(nodes)-1], nodes[:len(nodes)-1]
	tMesh, err := startMesh(nodes)
	if err != nil {
		return nil, err
	}
	addrs, err := overlayAddrs(nodes)
	if err != nil {
		return nil, err
	}
	target := func(n *harness.Node) string { return fmt.Sprintf("%s:%d", addrs[n], quarPort) }
	for _, n := range nodes {
		p, err := harness.Spawn(n.Namespace, filepath.Join(n.Dir, "rr-server.log"), env.Self, "helper", "rr-server", fmt.Sprintf("0.0.0.0:%d", quarPort))
		if err != nil {
			return nil, err
		}
		*procs = append(*procs, p)
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			return nil, err
		}
	}
	// Probers: each other node dials X; X dials every other node.
	probeLogs := map[*harness.Node]string{}
	for _, n := range nodes {
		var ts []string
		if n == x {
			for _, o := range others {
				ts = append(ts, target(o))
			}
		} else {
			ts = []string{target(x)}
		}
		probeLogs[n] = filepath.Join(n.Dir, "prober.log")
		pr, err := harness.Spawn(n.Namespace, probeLogs[n], append([]string{env.Self, "helper", "prober", "20ms"}, ts...)...)
		if err != nil {
			return nil, err
		}
		*procs = append(*procs, pr)
	}
	// A node is cut from X when X's probe to it is down and, unless it is
	// in ops (forensic access), its own probe to X; restored when both are
	// up.
	cutProbes, backProbes := map[string][]probeKey{}, map[string][]probeKey{}
	forensic := probeKey{probeLogs[ops], target(x)}
	for _, o := range others {
		xp := probeKey{probeLogs[x], target(o)}
		op := probeKey{probeLogs[o], target(x)}
		if o == ops {
			cutProbes[o.Name], backProbes[o.Name] = []probeKey{xp}, []probeKey{xp}
		} else {
			cutProbes[o.Name], backProbes[o.Name] = []probeKey{xp, op}, []probeKey{xp, op}
		}
	}
	all := map[string][]probeKey{ops.Name: {forensic}}
	for k, v := range backProbes {
		all[k] = append(all[k], v...)
	}
	if _, err := waitFlips(all, "up", time.Time{}, 20*time.Second, 200*time.Millisecond); err != nil {
		return nil, fmt.Errorf("probes before any quarantine: %w", err)
	}

	cycles := prm.QuarCycles
	var cs []quarCycle
	for r := 0; r < cycles; r++ {
		var cy quarCycle
		cy.tQ = time.Now()
		if _, err := segmeshCLI(env, "quarantine", x.Name, "--allow-from", "ops", "--reason", "bench", "--socket", ops.Socket); err != nil {
			return nil, err
		}
		cy.cmdQ = time.Since(cy.tQ)
		if cy.cut, err = waitFlips(cutProbes, "down", cy.tQ, 15*time.Second, 300*time.Millisecond); err != nil {
			return nil, fmt.Errorf("quarantine, cycle %d: %w", r+1, err)
		}
		time.Sleep(500 * time.Millisecond) // the forensic probe's chance to fail
		ev, err := readProbeLog(forensic.log)
		if err != nil {
			return nil, err
		}
		for _, e := range ev {
			if e.addr == forensic.addr && e.state == "down" && !e.at.Before(cy.tQ) {
				cy.forensN++
			}
		}
		if _, ok := lastFlip(ev, forensic.addr, "down", cy.tQ); ok {
			return nil, fmt.Errorf("quarantine, cycle %d: the ops node's forensic connections to %s are refused", r+1, x.Name)
		}
		cy.tR = time.Now()
		if _, err := segmeshCLI(env, "release", x.Name, "--socket", ops.Socket); err != nil {
			return nil, err
		}
		cy.cmdR = time.Since(cy.tR)
		if cy.back, err = waitFlips(backProbes, "up", cy.tR, 15*time.Second, 300*time.Millisecond); err != nil {
			return nil, fmt.Errorf("release, cycle %d: %w", r+1, err)
		}
		logf("12 cycle %d: cut max %.3f s, restored max %.3f s (commands %.3f / %.3f s)", r+1,
			percentile(values(cy.cut), 100), percentile(values(cy.back), 100), cy.cmdQ.Seconds(), cy.cmdR.Seconds())
		cs = append(cs, cy)
		time.Sleep(500 * time.Millisecond)
	}

	// Attribution from the daemons' logs: when each node learned the entry
	// (gossip; X its own quarantine) and, for a quarantine, when it had
	// applied the nft batch (the conntrack line follows it).
	var learnQ, applyQ, learnR, xLearnQ []float64
	for i, cy := range cs {
		var endQ, endR time.Time
		endQ = cy.tR
		if i+1 < len(cs) {
			endR = cs[i+1].tQ
		}
		for _, n := range nodes {
			if n == ops {
				continue // it takes the command
			}
			ev, err := daemonEvents(n.LogPath, msgQuarantined, msgSelfQuar, msgReleased, msgCutApplied, msgCutNotDel)
			if err != nil {
				return nil, err
			}
			if n == x {
				if d := firstAfter(ev, cy.tQ, endQ, msgSelfQuar); d >= 0 {
					xLearnQ = append(xLearnQ, d)
				}
			} else {
				if d := firstAfter(ev, cy.tQ, endQ, msgQuarantined); d >= 0 {
					learnQ = append(learnQ, d)
				}
				if d := firstAfter(ev, cy.tQ, endQ, msgCutApplied, msgCutNotDel); d >= 0 {
					applyQ = append(applyQ, d)
				}
			}
			if d := firstAfter(ev, cy.tR, endR, msgReleased); d >= 0 {
				learnR = append(learnR, d)
			}
		}
	}
	var cut, back, cmdQ, cmdR []float64
	forensDowns := 0
	for _, cy := range cs {
		cut = append(cut, values(cy.cut)...)
		back = append(back, values(cy.back)...)
		cmdQ = append(cmdQ, cy.cmdQ.Seconds())
		cmdR = append(cmdR, cy.cmdR.Seconds())
		forensDowns += cy.forensN
	}
	dist := func(v []float64) string {
		if len(v) == 0 {
			return "none logged"
		}
		return fmt.Sprintf("p50 %.3f, p95 %.3f, max %.3f s (%d)", percentile(v, 50), percentile(v, 95), percentile(v, 100), len(v))
	}
	setup := fmt.Sprintf("%d real nodes in enforce mode (policy: every node may reach every node on tcp/%d and by ICMP; all peers up after %.1f s): n0 role ops, n1-n%d and X = %s role server. "+
		"Every node runs this program's rr-server on tcp/%d and a prober (a new TCP connection every 20 ms, 40 ms timeout): the %d others dial X, X dials all of them. "+
		"%d cycles of `segmesh quarantine %s --allow-from ops --socket` of n0, once every node is cut, `segmesh release %s --socket` of n0. ",
		len(nodes), quarPort, tMesh.Seconds(), len(nodes)-2, x.Name, quarPort, len(others), len(cs), x.Name, x.Name)
	rowA := Row{ID: "12a", What: fmt.Sprintf("quarantine → X cut on all %d nodes, s", len(nodes)),
		Measured: fmt.Sprintf("p50 %.3f, p95 %.3f, max %.3f (%d samples)", percentile(cut, 50), percentile(cut, 95), percentile(cut, 100), len(cut)),
		Target:   "p95 ≤ 1 s", Ratio: fmt.Sprintf("%.2f of target", percentile(cut, 95)), Verdict: verdict(percentile(cut, 95) <= 1),
		Note: setup + fmt.Sprintf("A sample per other node and cycle: from starting the command until X's probe to it and its probe to X both stopped answering (n0, in ops, keeps its forensic path: only X's probe to it; its own to X had to stay up, and did in every cycle, %d lost dial(s)), the final flip of each probe (a flap before it does not count). "+
			"A pair is cut by whichever end enforces first; X learns the entry by gossip as every node does. The command returned after %s (n0 enforcing). From the daemons' logs: the %d servers other than n0 and X logged the entry from gossip after %s, their nft batch applied (the conntrack line after it) after %s; X logged its own quarantine after %s. Resolution ≈ 20–60 ms.",
			forensDowns, dist(cmdQ), len(others)-1, dist(learnQ), dist(applyQ), dist(xLearnQ)),
	}
	rowB := Row{ID: "12b", What: fmt.Sprintf("release → access restored on all %d nodes, s", len(nodes)),
		Measured: fmt.Sprintf("p50 %.3f, p95 %.3f, max %.3f (%d samples)", percentile(back, 50), percentile(back, 95), percentile(back, 100), len(back)),
		Target:   "p95 ≤ 1 s", Ratio: fmt.Sprintf("%.2f of target", percentile(back, 95)), Verdict: verdict(percentile(back, 95) <= 1),
		Note: fmt.Sprintf("the cycles of 12a; a sample per other node and cycle: from starting `segmesh release` until its probe to X and X's probe to it both answer again (both ends must have lifted it; n0: X's probe to it). The command returned after %s; the 9 nodes other than n0 logged the release from gossip after %s.",
			dist(cmdR), dist(learnR)),
	}
	return []Row{rowA, rowB}, nil
}

func values(m map[string]float64) []float64 {
	var out []float64
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
