package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// meshPolicy lets segment client reach segment server on tcp/7000 (and
// extra ports when a later version adds them); ICMP from any mesh node.
func meshPolicy(extra string) string {
	return `mode: enforce
segments:
  server: {role: server}
  client: {role: client}
rules:
  - name: client-to-server
    from: [client]
    to: [server]
    ports: [tcp/7000` + extra + `]
  - name: ping
    from: ["*"]
    to: [server]
    ports: [icmp]
`
}

type probeEvent struct {
	addr, state string
	at          time.Time
}

func readProbeLog(path string) ([]probeEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ev []probeEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue
		}
		ns, err := strconv.ParseInt(fs[2], 10, 64)
		if err != nil {
			continue
		}
		ev = append(ev, probeEvent{fs[0], fs[1], time.Unix(0, ns)})
	}
	return ev, sc.Err()
}

// waitProbes waits until every addr reached state after t0 in the prober's
// log and returns each one's delay.
func waitProbes(path string, addrs []string, state string, t0 time.Time, timeout time.Duration) ([]float64, error) {
	var out []float64
	err := harness.WaitFor(timeout, func() error {
		ev, err := readProbeLog(path)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, a := range addrs {
			found := false
			for _, e := range ev {
				if e.addr == a && e.state == state && !e.at.Before(t0) {
					out = append(out, e.at.Sub(t0).Seconds())
					found = true
					break
				}
			}
			if !found {
				return fmt.Errorf("%s not %s yet", a, state)
			}
		}
		return nil
	})
	return out, err
}

func benchMesh(env *Env, prm Params) []Row {
	c, err := harness.New(harness.Config{Binary: env.Segmesh, LogLevel: "info", Policy: meshPolicy("")})
	if err != nil {
		return errRow("5", "mesh formation", err)
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
	rows, err := measureMesh(env, prm, c, &procs)
	if err != nil {
		c.Report(os.Stderr)
		return append(rows, errRow("5", "mesh formation / propagation", err)...)
	}
	return rows
}

// addMeshNodes adds n nodes n0..n(n-1), all joining n0: role server, but
// the last one (the mover, whose reachability the probes follow) gets
// moverRole.
func addMeshNodes(c *harness.Cluster, n int, moverRole string) ([]*harness.Node, error) {
	var nodes []*harness.Node
	for i := 0; i < n; i++ {
		role := "server"
		if i == n-1 {
			role = moverRole
		}
		spec := harness.NodeSpec{Name: fmt.Sprintf("n%d", i), Tags: map[string]string{"role": role}}
		if i > 0 {
			spec.Join = []string{nodes[0].GossipAddr()}
		}
		node, err := c.AddNode(spec)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, node)
	}
	return nodes, nil
}

// startMesh starts every node at once and waits until every status lists
// every other node up; it returns how long that took.
func startMesh(nodes []*harness.Node) (time.Duration, error) {
	t0 := time.Now()
	for _, n := range nodes {
		if err := n.Start(); err != nil {
			return 0, err
		}
	}
	if _, err := harness.WaitMesh(60*time.Second, nodes...); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// overlayAddrs reads every node's overlay IPv4 from its status.
func overlayAddrs(nodes []*harness.Node) (map[*harness.Node]string, error) {
	addrs := map[*harness.Node]string{}
	for _, n := range nodes {
		st, err := n.Status()
		if err != nil {
			return nil, err
		}
		addrs[n] = st.Self.Address
	}
	return addrs, nil
}

// startProbes runs the rr helper on every server (listening on ports) and,
// in the mover's namespace, the prober dialling every server on every port
// every 20 ms. It returns the prober's log and the probed addresses per
// port. The processes are appended to procs for the caller to stop.
func startProbes(env *Env, procs *[]*harness.Proc, mover *harness.Node, servers []*harness.Node, addrs map[*harness.Node]string, ports ...int) (string, map[int][]string, error) {
	targets := map[int][]string{}
	var all []string
	for _, s := range servers {
		var listen []string
		for _, port := range ports {
			listen = append(listen, fmt.Sprintf("0.0.0.0:%d", port))
			t := fmt.Sprintf("%s:%d", addrs[s], port)
			targets[port] = append(targets[port], t)
			all = append(all, t)
		}
		p, err := harness.Spawn(s.Namespace, filepath.Join(s.Dir, "rr-server.log"), append([]string{env.Self, "helper", "rr-server"}, listen...)...)
		if err != nil {
			return "", nil, err
		}
		*procs = append(*procs, p)
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			return "", nil, err
		}
	}
	probeLog := filepath.Join(mover.Dir, "prober.log")
	pr, err := harness.Spawn(mover.Namespace, probeLog, append([]string{env.Self, "helper", "prober", "20ms"}, all...)...)
	if err != nil {
		return "", nil, err
	}
	*procs = append(*procs, pr)
	return probeLog, targets, nil
}

func measureMesh(env *Env, prm Params, c *harness.Cluster, procs *[]*harness.Proc) ([]Row, error) {
	nodes, err := addMeshNodes(c, prm.MeshNodes, "other") // the mover becomes client and back
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	tMesh, err := startMesh(nodes)
	if err != nil {
		return nil, err
	}
	// Handshakes: one ping per ordered pair triggers them; wait until every
	// node reports a handshake with every other.
	addrs, err := overlayAddrs(nodes)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				wg.Add(1)
				go func() { defer wg.Done(); _, _ = a.Exec("ping", "-c1", "-W1", addrs[b]) }()
			}
		}
	}
	err = harness.WaitFor(30*time.Second, func() error {
		for _, n := range nodes {
			d, err := n.WireGuard()
			if err != nil {
				return err
			}
			hs := 0
			for _, p := range d.Peers {
				if !p.LatestHandshake.IsZero() {
					hs++
				}
			}
			if hs < len(nodes)-1 {
				return fmt.Errorf("%s: %d/%d handshakes", n.Name, hs, len(nodes)-1)
			}
		}
		return nil
	})
	tHS := time.Since(t0)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	rows := []Row{{
		ID: "5a", What: fmt.Sprintf("mesh formation, %d nodes, s", len(nodes)),
		Measured: fmt.Sprintf("all peers up in every status %.2f; handshakes on all %d pairs %.2f", tMesh.Seconds(), len(nodes)*(len(nodes)-1)/2, tHS.Seconds()),
		Target:   "≤ 5 s", Ratio: fmt.Sprintf("%.2f of target", tHS.Seconds()/5), Verdict: verdict(tHS <= 5*time.Second),
		Note: "from starting the 10 daemons (all at once, seed n0) until every `status --json` lists every other node up, then until `wg show` on every node has a handshake with every peer (one ping per ordered pair, sent as soon as the mesh was up, triggers them).",
	}}

	// Propagation: servers listen on 7000/7001; the mover probes them.
	mover := nodes[len(nodes)-1]
	probeLog, targets, err := startProbes(env, procs, mover, nodes[:len(nodes)-1], addrs, 7000, 7001)
	if err != nil {
		return rows, err
	}
	t7000, t7001 := targets[7000], targets[7001]
	if _, err := waitProbes(probeLog, append(t7000, t7001...), "down", time.Time{}, 10*time.Second); err != nil {
		return rows, fmt.Errorf("prober: %w", err)
	}

	setRole := func(role string) (time.Time, error) {
		if err := harness.EditConfig(mover.ConfigPath, map[string]any{"tags": map[string]any{"role": role}}); err != nil {
			return time.Time{}, err
		}
		t := time.Now()
		if out, err := exec.Command(env.Segmesh, "reload", "--socket", mover.Socket).CombinedOutput(); err != nil {
			return t, fmt.Errorf("segmesh reload: %w: %s", err, out)
		}
		return t, nil
	}
	var tagDelays []float64
	for r := 0; r < prm.PropRounds; r++ {
		t, err := setRole("client")
		if err != nil {
			return rows, err
		}
		d, err := waitProbes(probeLog, t7000, "up", t, 15*time.Second)
		if err != nil {
			return rows, fmt.Errorf("tag change to client: %w", err)
		}
		tagDelays = append(tagDelays, d...)
		if t, err = setRole("other"); err != nil {
			return rows, err
		}
		if d, err = waitProbes(probeLog, t7000, "down", t, 15*time.Second); err != nil {
			return rows, fmt.Errorf("tag change back: %w", err)
		}
		tagDelays = append(tagDelays, d...)
	}
	rows = append(rows, propRow("5b", "tag change → enforced on all nodes, s", tagDelays, prm,
		"the mover's tags are edited and `segmesh reload` runs; a prober in its namespace dials tcp/7000 on the 9 other nodes every 20 ms (40 ms timeout): delay from the reload until each node admits (and, after the change back, refuses) it. Resolution ≈ 20–60 ms."))

	// Policy apply: v+1 adds tcp/7001, v+2 removes it.
	if _, err := setRole("client"); err != nil {
		return rows, err
	}
	if _, err := waitProbes(probeLog, t7000, "up", time.Now().Add(-time.Hour), 15*time.Second); err != nil {
		return rows, err
	}
	pol := filepath.Join(mover.Dir, "bench-policy.yaml")
	apply := func(extra string) (time.Time, error) {
		if err := os.WriteFile(pol, []byte(meshPolicy(extra)), 0o600); err != nil {
			return time.Time{}, err
		}
		t := time.Now()
		if out, err := exec.Command(env.Segmesh, "policy", "apply", pol, "--socket", nodes[0].Socket).CombinedOutput(); err != nil {
			return t, fmt.Errorf("policy apply: %w: %s", err, out)
		}
		return t, nil
	}
	var polDelays []float64
	for r := 0; r < prm.PropRounds; r++ {
		t, err := apply(", tcp/7001")
		if err != nil {
			return rows, err
		}
		d, err := waitProbes(probeLog, t7001, "up", t, 15*time.Second)
		if err != nil {
			return rows, fmt.Errorf("policy adding tcp/7001: %w", err)
		}
		polDelays = append(polDelays, d...)
		if t, err = apply(""); err != nil {
			return rows, err
		}
		if d, err = waitProbes(probeLog, t7001, "down", t, 15*time.Second); err != nil {
			return rows, fmt.Errorf("policy removing tcp/7001: %w", err)
		}
		polDelays = append(polDelays, d...)
	}
	rows = append(rows, propRow("5c", "policy apply → enforced on all nodes, s", polDelays, prm,
		"`segmesh policy apply` on n0 (a policy adding tcp/7001, then one removing it); delay from starting the command until each of the 9 servers admits (refuses) the mover's probe on tcp/7001."))
	return rows, nil
}

func propRow(id, what string, d []float64, prm Params, note string) Row {
	p50, p95, mx := percentile(d, 50), percentile(d, 95), percentile(d, 100)
	return Row{ID: id, What: what,
		Measured: fmt.Sprintf("p50 %.3f, p95 %.3f, max %.3f (%d samples)", p50, p95, mx, len(d)),
		Target:   "p95 ≤ 1 s", Ratio: fmt.Sprintf("%.2f of target", p95), Verdict: verdict(p95 <= 1),
		Note: fmt.Sprintf("%s %d round(s) each way.", note, prm.PropRounds)}
}
