package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/test/harness"
)

const workloadPolicy = `mode: enforce
segments:
  app: {role: app}
  db: {role: db}
  api: {svc: api}
rules:
  - {name: api-db, from: [api], to: [db], ports: [tcp/5432]}
  - {name: app-db, from: [app], to: [db], ports: [tcp/6379]}
  - {name: ping, from: ["*"], to: ["*"], ports: [icmp]}
`

// workloadMesh is db1 and app1, app1 with workloads api (cgroup api) and
// cron (cgroup cron) below a test cgroup tree.
type workloadMesh struct {
	tc       *harness.TestCluster
	cg       *testCgroups
	app, db  *harness.Node
	db4      netip.Addr
	appKey   string
	p5432    flow
	p6379    flow
	deniedAt time.Duration // the refusal bound at the sender
	flowLog  string        // app1's flow_log
}

// newWorkloadMesh starts the mesh under policy; with caMode both nodes
// run in CA mode, app1's certificate allowing the workload tag svc=api
// only (the policy then goes out signed as version 1).
func newWorkloadMesh(t *testing.T, policy string, caMode bool) *workloadMesh {
	t.Helper()
	requireTool(t, "nsenter")
	cg := newTestCgroups(t)
	cg.mkdir("api")
	cg.mkdir("cron")
	var auth *authority
	if caMode {
		auth = newAuthority(t, t.TempDir())
		_, policy = auth.sign(t, policy, 1)
	}
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: policy})
	m := &workloadMesh{tc: tc, cg: cg, deniedAt: 100 * time.Millisecond, flowLog: filepath.Join(t.TempDir(), "flows.jsonl")}
	m.db = tc.AddNode(harness.NodeSpec{Name: "db1", Tags: role("db")})
	m.app = tc.AddNode(harness.NodeSpec{Name: "app1", Tags: role("app"), Join: []string{m.db.GossipAddr()}, HostSys: true,
		Set: map[string]any{
			"metrics_listen": metricsListen,
			"flow_log":       m.flowLog,
			"workloads": []map[string]any{
				{"name": "api", "cgroup": cg.path("api"), "tags": map[string]string{"svc": "api"}},
				{"name": "cron", "cgroup": cg.path("cron"), "tags": map[string]string{"svc": "cron"}},
			},
		}})
	if caMode {
		auth.trust(t, m.db, role("db"))
		auth.trust(t, m.app, role("app"), "--workload-tags", "svc=api")
	}
	tc.Start(m.db, m.app)
	tc.WaitMesh(meshTimeout, m.db, m.app)
	tc.WaitFor("one policy on both nodes", 20*time.Second, func() error {
		p, err := policyOf(m.db)
		if err != nil || p.Version < 1 {
			return fmt.Errorf("db1 has no policy yet (%v)", err)
		}
		return hasPolicy(p.Version, p.Hash)(m.app)
	})
	m.db4 = netip.MustParseAddr(tc.Status(m.db).Self.Address)
	m.appKey = tc.Status(m.app).Self.PublicKey
	m.p5432, m.p6379 = flow{"tcp", m.db4, 5432}, flow{"tcp", m.db4, 6379}
	startServer(t, tc, m.db.Namespace, "serve-db1", []int{5432, 6379}, []int{54})
	tc.Ping(m.app, m.db4.String(), pingTimeout)
	return m
}

// expect dials flows from app1's cgroup name ("": in no workload) and
// checks the results: "ok", or "refused" at once.
func (m *workloadMesh) expect(t *testing.T, name string, want map[flow]string) {
	t.Helper()
	var flows []flow
	for f := range want {
		flows = append(flows, f)
	}
	var cg *testCgroups
	if name != "" {
		cg = m.cg
	}
	res := dialIn(t, m.app.Namespace, cg, name, nil, flows...)
	who := name
	if who == "" {
		who = "no workload"
	}
	for f, w := range want {
		r := res[f]
		if r.word != w {
			t.Errorf("app1 (%s) -> %s: %s, want %s", who, f, r.line, w)
		}
		if w == "refused" && r.dur > m.deniedAt {
			t.Errorf("app1 (%s) -> %s: refused after %v, want within %v", who, f, r.dur, m.deniedAt)
		}
		t.Logf("app1 (%s) -> %s: %s", who, f, r.line)
	}
}

// TestWorkloads: app1 declares workloads api and cron by cgroup; the policy
// gives api tcp/5432 on db and every app process tcp/6379. Processes in api
// reach both; in cron or in no workload 5432 is refused at once by app1's
// egress, logged with the workload, and 6379 passes; db1 admits app1 on
// both (ingress is per node and its workloads). Then: a socket keeps its
// cgroup, a restarted cgroup (new id) is followed within 1 s, audit mode
// accepts and logs, and removing the rule stops api's established flow.
func TestWorkloads(t *testing.T) {
	m := newWorkloadMesh(t, workloadPolicy, false)
	tc, app, db := m.tc, m.app, m.db
	workloadStates(tc, app, map[string]string{"api": api.WorkloadActive, "cron": api.WorkloadActive})
	ws, _ := selfWorkloads(app)
	if w := ws["api"]; w.Cgroup != m.cg.path("api") || !sameStrings(w.Segments, []string{"api", "app"}) {
		t.Errorf("app1's api workload %+v: want cgroup %s, segments [api app]", w, m.cg.path("api"))
	}
	tc.WaitFor("db1 lists app1's workloads", 10*time.Second, func() error {
		pw, err := peerWorkloads(db, m.appKey)
		if err != nil {
			return err
		}
		if pw["api"].State != api.WorkloadActive || !sameStrings(pw["api"].Segments, []string{"api", "app"}) || pw["cron"].State != api.WorkloadActive {
			return fmt.Errorf("db1 sees app1's workloads %+v", pw)
		}
		return nil
	})

	// The api segment's member is app1's workload, on both nodes.
	for _, n := range []*harness.Node{app, db} {
		segs, err := api.NewClient(n.Socket).Segments(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, sv := range segs {
			if sv.Name == "api" && (len(sv.Members) != 1 || sv.Members[0].Name != "app1/api" || sv.Members[0].Workload != "api") {
				t.Errorf("%s: segment api members %+v, want app1/api", n.Name, sv.Members)
			}
		}
	}

	t.Run("egress by cgroup", func(t *testing.T) {
		m.expect(t, "api", map[flow]string{m.p5432: "ok", m.p6379: "ok"})
		m.expect(t, "cron", map[flow]string{m.p5432: "refused", m.p6379: "ok"})
		// api's connections end (closed by api first: the kernel sends
		// the last ACKs from no socket of api's): no denial of them.
		time.Sleep(time.Second) // nothing to wait for: the absence of a flow
		if fl, err := api.NewClient(app.Socket).Flows(t.Context()); err != nil {
			t.Fatal(err)
		} else if f, ok := findFlow(fl, func(f api.Flow) bool { return f.Direction == api.DirectionOut && f.Workload == "" }); ok {
			t.Errorf("a denial for the node's identity after api's allowed connections: %+v", f)
		}
		m.expect(t, "", map[flow]string{m.p5432: "refused", m.p6379: "ok"})

		f, _ := waitFlow(t, app.Socket, 10*time.Second, "cron's egress denial in app1's flows", func(f api.Flow) bool {
			return f.Direction == api.DirectionOut && f.Workload == "cron" && f.Port == 5432 && f.Verdict == api.VerdictDenied
		})
		if f.Cgroup != m.cg.path("cron") || f.DstName != "db1" || !sameStrings(f.DstSegments, []string{"db"}) || f.UID == nil || *f.UID != 0 {
			t.Errorf("cron's egress flow %+v: want cgroup %s, dst db1 [db], uid 0", f, m.cg.path("cron"))
		}
		t.Logf("cron's egress denial on app1: %+v", f)
		// A process in no workload whose socket is still open (udp): the
		// node finds the process.
		udp := flow{"udp", m.db4, 54}
		if r := dialIn(t, app.Namespace, nil, "", []string{"-hold", "3s"}, udp)[udp]; r.word != "filtered" {
			t.Errorf("app1 (no workload) -> %s: %s, want filtered", udp, r.line)
		}
		f, _ = waitFlow(t, app.Socket, 10*time.Second, "the udp egress denial in app1's flows", func(f api.Flow) bool {
			return f.Direction == api.DirectionOut && f.Workload == "" && f.Proto == "udp" && f.Port == 54
		})
		if f.Command != "segmesh-probe" || f.PID == 0 {
			t.Errorf("udp egress flow %+v: want command segmesh-probe and its pid", f)
		}
		t.Logf("udp egress denial on app1: pid %d command %q uid %v", f.PID, f.Command, *f.UID)
		// And in app1's flow log, for a SIEM.
		tc.WaitFor("cron's egress denial in app1's flow_log", 10*time.Second, func() error {
			b, err := os.ReadFile(m.flowLog)
			if err != nil {
				return err
			}
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, `"direction":"out"`) && strings.Contains(l, `"workload":"cron"`) && strings.Contains(l, `"port":5432`) {
					return nil
				}
			}
			return fmt.Errorf("not among %d bytes", len(b))
		})
		// The metrics: by direction, and the workloads by state.
		_, samples := scrape(t, app)
		if v, ok := metricValue(samples, "segmesh_packets_denied_total", map[string]string{"direction": "out", "src_segment": "app", "dst_segment": "db"}); !ok || v < 1 {
			t.Errorf("segmesh_packets_denied_total{direction=out,app->db} = %v (%v) on app1", v, ok)
		}
		if v, _ := metricValue(samples, "segmesh_workloads", map[string]string{"state": "active"}); v != 2 {
			t.Errorf("segmesh_workloads{state=active} = %v on app1, want 2", v)
		}
	})

	t.Run("ingress at db1 unchanged", func(t *testing.T) {
		// With app1's egress switched off (root on app1), db1 still
		// admits app1 on both ports: its identity there is the union of
		// its node's and its workloads'.
		bypassEgress(t, app)
		m.expect(t, "cron", map[flow]string{m.p5432: "ok", m.p6379: "ok"})
	})

	t.Run("a socket keeps its cgroup", func(t *testing.T) {
		release := filepath.Join(t.TempDir(), "go")
		cmd := inCgroup(app.Namespace, m.cg, "cron", bins.Probe, "early", "-wait", release, flowTarget(m.p5432))
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		tc.WaitFor("the early socket is open", 10*time.Second, func() error {
			if !strings.Contains(out.String(), "ready") {
				return fmt.Errorf("output %q", out.String())
			}
			return nil
		})
		// Into api's cgroup (the process; its socket stays in cron's).
		if err := os.WriteFile(filepath.Join(m.cg.dir("api"), "cgroup.procs"), []byte(fmt.Sprint(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(release, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("early: %v: %s", err, out.String())
		}
		if s := out.String(); !strings.Contains(s, "early refused") || !strings.Contains(s, "fresh ok") {
			t.Errorf("a process moved from cron into api: %q, want the socket made before the move refused, a new one ok", s)
		}
	})

	t.Run("restart follows the new cgroup", func(t *testing.T) {
		if err := m.cg.remove("api"); err != nil {
			t.Fatal(err)
		}
		workloadStates(tc, app, map[string]string{"api": api.WorkloadMissing})
		m.cg.mkdir("api")
		start := time.Now()
		var took time.Duration
		tc.WaitFor("api reaches 5432 again", 5*time.Second, func() error {
			r := dialIn(t, app.Namespace, m.cg, "api", nil, m.p5432)[m.p5432]
			if r.word != "ok" {
				return fmt.Errorf("%s", r.line)
			}
			took = time.Since(start)
			return nil
		})
		t.Logf("TIMING api's cgroup recreated (new id) -> its process reaches db1:5432 again: %v", took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("api allowed again %v after its cgroup came back, want within 1s", took)
		}
	})

	t.Run("audit mode", func(t *testing.T) {
		a := applyPolicy(t, db, strings.Replace(workloadPolicy, "mode: enforce", "mode: audit", 1))
		if _, err := waitNodes([]*harness.Node{app, db}, time.Now(), 10*time.Second, hasPolicy(a.version, a.hash)); err != nil {
			t.Fatal(err)
		}
		m.expect(t, "cron", map[flow]string{m.p5432: "ok"})
		waitFlow(t, app.Socket, 10*time.Second, "cron's audited egress in app1's flows", func(f api.Flow) bool {
			return f.Direction == api.DirectionOut && f.Workload == "cron" && f.Port == 5432 && f.Verdict == api.VerdictAudited
		})
		a = applyPolicy(t, db, workloadPolicy)
		if _, err := waitNodes([]*harness.Node{app, db}, time.Now(), 10*time.Second, hasPolicy(a.version, a.hash)); err != nil {
			t.Fatal(err)
		}
		m.expect(t, "cron", map[flow]string{m.p5432: "refused"})
	})

	t.Run("rule removed stops the flow", func(t *testing.T) {
		cmd := inCgroup(app.Namespace, m.cg, "api", bins.Probe, "stream", "-interval", "50ms", flowTarget(m.p5432))
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
		tc.WaitFor("api's stream echoes", 10*time.Second, func() error {
			if n := len(echoTimes(out.String())); n < 5 {
				return fmt.Errorf("%d echoes: %s", n, out.String())
			}
			return nil
		})
		next := strings.Replace(workloadPolicy, "  - {name: api-db, from: [api], to: [db], ports: [tcp/5432]}\n", "", 1)
		start := time.Now()
		a := applyPolicy(t, db, next)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("api's established flow still runs 5s after the rule went: %s", out.String())
		}
		t.Logf("TIMING rule removed -> api's established flow reset at app1: %v (%s)", time.Since(start).Round(time.Millisecond),
			strings.TrimSpace(lastLine(out.String())))
		if !strings.Contains(out.String(), "connection reset") {
			t.Errorf("api's stream ended without a reset: %s", out.String())
		}
		if _, err := waitNodes([]*harness.Node{app, db}, time.Now(), 10*time.Second, hasPolicy(a.version, a.hash)); err != nil {
			t.Fatal(err)
		}
		// And db1 no longer admits it either (app1's egress off).
		bypassEgress(t, app)
		m.expect(t, "api", map[flow]string{m.p5432: resTimeout, m.p6379: "ok"})
	})
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// TestWorkloadsCA: in CA mode app1's certificate allows the workload tag
// svc=api only. Its workload cron (svc=cron) is rejected on both nodes,
// with the reason, and its processes have the node's identity: 5432 is
// refused, 6379 passes; api reaches 5432.
func TestWorkloadsCA(t *testing.T) {
	m := newWorkloadMesh(t, workloadPolicy, true)
	tc, app, db := m.tc, m.app, m.db
	workloadStates(tc, app, map[string]string{"api": api.WorkloadActive, "cron": api.WorkloadRejected})
	ws, _ := selfWorkloads(app)
	if !strings.Contains(ws["cron"].Reason, "svc=cron") {
		t.Errorf("app1's cron rejected with reason %q, want it to name svc=cron", ws["cron"].Reason)
	}
	tc.WaitFor("db1 rejects app1's cron", 10*time.Second, func() error {
		pw, err := peerWorkloads(db, m.appKey)
		if err != nil {
			return err
		}
		if pw["cron"].State != api.WorkloadRejected || pw["cron"].Reason == "" || pw["api"].State != api.WorkloadActive {
			return fmt.Errorf("db1 sees app1's workloads %+v", pw)
		}
		t.Logf("db1: app1's cron %s (%s)", pw["cron"].State, pw["cron"].Reason)
		return nil
	})
	m.expect(t, "api", map[flow]string{m.p5432: "ok", m.p6379: "ok"})
	m.expect(t, "cron", map[flow]string{m.p5432: "refused", m.p6379: "ok"})
	// db1 counts none of cron's tags: the rejected workload has no
	// segments there (app1's identity at db1 is its node's and api's).
	pw, _ := peerWorkloads(db, m.appKey)
	if len(pw["cron"].Segments) != 0 {
		t.Errorf("db1 gives the rejected cron segments %v", pw["cron"].Segments)
	}
}
