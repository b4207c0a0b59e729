package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/test/harness"
)

// obsPolicy is the policy of the observability tests: web may reach app on
// tcp/8080 and app may reach db on tcp/5432; ping is open. web1 -> db1
// tcp/5432 is the denied flow they watch.
const obsPolicy = `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
rules:
  - name: ping
    from: ["*"]
    to: ["*"]
    ports: [icmp]
  - name: web-to-app
    from: [web]
    to: [app]
    ports: [tcp/8080]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: [tcp/5432]
`

// Ports db1's echo server listens on in the observability tests.
var (
	obsTCP = []int{5432, 5433, 6379}
	obsUDP = []int{54}
)

// metricsListen is the metrics_listen of the nodes that serve metrics:
// loopback inside the node's own namespace, so nodes never clash.
const metricsListen = "127.0.0.1:9476"

// obsMesh is a three-node mesh web1, app1, db1 (tags role=web|app|db) with
// an echo server on db1.
type obsMesh struct {
	tc            *harness.TestCluster
	web, app, db  *harness.Node
	self          map[*harness.Node]*harness.Status
	policyVersion int64
}

// newObsMesh starts the mesh with policy as every node's policy_file and
// dbSet as extra config keys of db1, waits until every node enforces one
// and the same policy version, and starts db1's echo server.
func newObsMesh(t *testing.T, policy string, dbSet map[string]any) *obsMesh {
	t.Helper()
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: policy})
	m := &obsMesh{tc: tc, self: map[*harness.Node]*harness.Status{}}
	m.web = tc.AddNode(harness.NodeSpec{Name: "web1", Tags: role("web")})
	m.app = tc.AddNode(harness.NodeSpec{Name: "app1", Tags: role("app"), Join: []string{m.web.GossipAddr()}})
	m.db = tc.AddNode(harness.NodeSpec{Name: "db1", Tags: role("db"), Join: []string{m.web.GossipAddr()}, Set: dbSet})
	nodes := m.nodes()
	start := time.Now()
	tc.Start(nodes...)
	tc.WaitMesh(meshTimeout, nodes...)
	tc.WaitFor("one policy active everywhere", 20*time.Second, func() error {
		p, err := policyOf(m.web)
		if err != nil {
			return err
		}
		if p.Version < 1 {
			return fmt.Errorf("web1 has no policy yet")
		}
		for _, n := range nodes {
			if err := hasPolicy(p.Version, p.Hash)(n); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
		}
		m.policyVersion = p.Version
		return nil
	})
	t.Logf("3-node mesh with policy v%d up in %v", m.policyVersion, time.Since(start).Round(time.Millisecond))
	for _, n := range nodes {
		m.self[n] = tc.Status(n)
	}
	startServer(t, tc, m.db.Namespace, "serve-db1", obsTCP, obsUDP)
	return m
}

func (m *obsMesh) nodes() []*harness.Node { return []*harness.Node{m.web, m.app, m.db} }

// addr is n's overlay IPv4.
func (m *obsMesh) addr(n *harness.Node) netip.Addr {
	return netip.MustParseAddr(m.self[n].Self.Address)
}

// key is n's public key.
func (m *obsMesh) key(n *harness.Node) string { return m.self[n].Self.PublicKey }

// warmUp pings dst from src so the WireGuard session exists before a
// timing starts (icmp is allowed by obsPolicy's ping rule).
func (m *obsMesh) warmUp(src, dst *harness.Node) {
	m.tc.Ping(src, m.addr(dst).String(), pingTimeout)
}

// expectProbe probes one flow from src and fails the test unless the result
// is want (resOK or resTimeout).
func expectProbe(t *testing.T, src *harness.Node, f flow, want string) {
	t.Helper()
	got, err := probeOne(src.Namespace, denyTimeout, f)
	if err != nil {
		t.Fatalf("%s -> %s: %v", src.Name, f, err)
	}
	if got != want {
		t.Fatalf("%s -> %s: %q, want %q", src.Name, f, got, want)
	}
}

// probeAsync starts probing one flow from src and delivers the result
// word (or the error) when the probe ends.
func probeAsync(src *harness.Node, f flow) <-chan string {
	res := make(chan string, 1)
	go func() {
		got, err := probeOne(src.Namespace, denyTimeout, f)
		if err != nil {
			got = err.Error()
		}
		res <- got
	}()
	return res
}

// flowFrom matches the flow aggregate of src's packets to proto/port with
// the verdict.
func (m *obsMesh) flowFrom(src *harness.Node, proto string, port uint16, verdict string) func(api.Flow) bool {
	addr := m.addr(src).String()
	return func(f api.Flow) bool {
		return f.SrcAddr == addr && f.Proto == proto && f.Port == port && f.Verdict == verdict
	}
}

// findFlow returns the first flow of fl that match accepts.
func findFlow(fl []api.Flow, match func(api.Flow) bool) (api.Flow, bool) {
	i := slices.IndexFunc(fl, match)
	if i < 0 {
		return api.Flow{}, false
	}
	return fl[i], true
}

// measurePoll is how often waits that measure a latency poll.
const measurePoll = 20 * time.Millisecond

// waitFlow polls GET /v1/flows on the node's socket until a flow match
// accepts shows up; it returns the flow and how long it took.
func waitFlow(t *testing.T, socket string, timeout time.Duration, what string, match func(api.Flow) bool) (api.Flow, time.Duration) {
	t.Helper()
	c := api.NewClient(socket)
	var got api.Flow
	var last []api.Flow
	start := time.Now()
	err := waitUntil(timeout, measurePoll, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fl, err := c.Flows(ctx)
		if err != nil {
			return err
		}
		last = fl
		var ok bool
		if got, ok = findFlow(fl, match); !ok {
			return fmt.Errorf("no such flow among %d", len(fl))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s in GET /v1/flows: %v; flows: %+v", what, err, last)
	}
	return got, time.Since(start)
}

// checkFlowFields checks the identity fields of a flow from src to dst.
func (m *obsMesh) checkFlowFields(t *testing.T, f api.Flow, src, dst *harness.Node, srcSeg, dstSeg string) {
	t.Helper()
	if f.SrcName != src.Name || f.SrcKey != m.key(src) || f.SrcAddr != m.addr(src).String() || f.DstAddr != m.addr(dst).String() {
		t.Errorf("flow %+v: want src %s (%s, %s) -> dst %s", f, src.Name, m.key(src), m.addr(src), m.addr(dst))
	}
	if !sameStrings(f.SrcSegments, []string{srcSeg}) || !sameStrings(f.DstSegments, []string{dstSeg}) {
		t.Errorf("flow segments %v -> %v, want [%s] -> [%s]", f.SrcSegments, f.DstSegments, srcSeg, dstSeg)
	}
	if f.Count < 1 || f.FirstSeen.IsZero() || f.LastSeen.Before(f.FirstSeen) {
		t.Errorf("flow count %d, first seen %v, last seen %v", f.Count, f.FirstSeen, f.LastSeen)
	}
}

// requireTool returns the path of an external program the test needs. When
// it is missing the test fails under CI=true (.ci/run installs it) and is
// skipped otherwise.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := "/usr/bin/" + name; fileExists(p) {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (CI=true: .ci/run installs it)", name)
	}
	t.Skipf("%s is not installed (set CI=true to make this a failure)", name)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// runCmd runs argv with a timeout (setup, when not nil, adjusts the command
// first: credentials, stdin, environment) and returns its stdout, stderr
// and exit code; err is set only when it could not run to completion.
func runCmd(timeout time.Duration, setup func(*exec.Cmd), argv ...string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if setup != nil {
		setup(c)
	}
	err = c.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0, nil
	case ctx.Err() != nil:
		return out.String(), errb.String(), -1, fmt.Errorf("%s: %w", strings.Join(argv, " "), ctx.Err())
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode(), nil
	}
	return out.String(), errb.String(), -1, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
}

// httpGet fetches url from inside namespace ns (segmesh-probe get) and
// returns the body.
func httpGet(ns, url string) (string, error) {
	stdout, stderr, code, err := runCmd(15*time.Second, nil, "ip", "netns", "exec", ns, bins.Probe, "get", url)
	if err != nil {
		return "", err
	}
	if code != 0 {
		return "", fmt.Errorf("GET %s in %s: exit %d: %s", url, ns, code, strings.TrimSpace(stderr))
	}
	return stdout, nil
}
