package harness

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// TB is the part of testing.TB the harness uses.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Failed() bool
	Cleanup(func())
}

var (
	netnsOnce    sync.Once
	netnsProblem string
)

// RequireNetns returns when network namespaces can be created here. If they
// cannot (not root, no ip(8), no /dev/net/tun, ...), the test fails when
// the environment variable CI is "true" and is skipped with the reason
// otherwise.
func RequireNetns(t TB) {
	t.Helper()
	netnsOnce.Do(func() { netnsProblem = NetnsProblem() })
	if netnsProblem == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("end-to-end test needs network namespaces and CI=true: %s", netnsProblem)
	}
	t.Skipf("skipping end-to-end test: %s (set CI=true to make this a failure)", netnsProblem)
}

// TestCluster wraps a Cluster for tests: every method fails the test on
// error. Its cleanup prints Report when the test failed and then closes the
// cluster.
type TestCluster struct {
	C *Cluster
	t TB
}

// NewTestCluster checks RequireNetns, creates a Cluster logging through
// t.Logf and registers its cleanup.
func NewTestCluster(t TB, cfg Config) *TestCluster {
	t.Helper()
	RequireNetns(t)
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			var b strings.Builder
			c.Report(&b)
			t.Logf("node logs and state:\n%s", b.String())
		}
		if err := c.Close(); err != nil {
			t.Logf("cluster cleanup: %v", err) // not fatal: the test result stands
		}
	})
	return &TestCluster{C: c, t: t}
}

// With returns a TestCluster on the same cluster that reports failures to t,
// for use inside subtests (t.Run): a subtest must not fail its parent. The
// cluster's cleanup stays with the test that created it.
func (tc *TestCluster) With(t TB) *TestCluster {
	return &TestCluster{C: tc.C, t: t}
}

// AddNode adds a node (see Cluster.AddNode).
func (tc *TestCluster) AddNode(spec NodeSpec) *Node {
	tc.t.Helper()
	n, err := tc.C.AddNode(spec)
	if err != nil {
		tc.t.Fatalf("add node: %v", err)
	}
	return n
}

// AddNamespace creates an extra namespace (see Cluster.AddNamespace).
func (tc *TestCluster) AddNamespace(name string) string {
	tc.t.Helper()
	ns, err := tc.C.AddNamespace(name)
	if err != nil {
		tc.t.Fatalf("add namespace: %v", err)
	}
	return ns
}

// Spawn starts argv in namespace ns (see Spawn) with its output in
// BaseDir/name.log, and stops it when the test (or subtest, see With)
// ends, printing its output first when the test failed.
func (tc *TestCluster) Spawn(ns, name string, argv ...string) *Proc {
	tc.t.Helper()
	p, err := Spawn(ns, filepath.Join(tc.C.BaseDir(), name+".log"), argv...)
	if err != nil {
		tc.t.Fatalf("%v", err)
	}
	t := tc.t
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("%v", err)
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", p, p.Output())
		}
	})
	return p
}

// Start starts the nodes.
func (tc *TestCluster) Start(nodes ...*Node) {
	tc.t.Helper()
	for _, n := range nodes {
		if err := n.Start(); err != nil {
			tc.t.Fatalf("%v", err)
		}
	}
}

// Stop stops the node gracefully (SIGTERM).
func (tc *TestCluster) Stop(n *Node) {
	tc.t.Helper()
	if err := n.Stop(); err != nil {
		tc.t.Fatalf("%v", err)
	}
}

// Kill kills the node (SIGKILL).
func (tc *TestCluster) Kill(n *Node) {
	tc.t.Helper()
	if err := n.Kill(); err != nil {
		tc.t.Fatalf("%v", err)
	}
}

// Restart stops the node gracefully and starts it again.
func (tc *TestCluster) Restart(n *Node) {
	tc.t.Helper()
	if err := n.Restart(); err != nil {
		tc.t.Fatalf("%v", err)
	}
}

// Status returns the node's decoded `status --json`.
func (tc *TestCluster) Status(n *Node) *Status {
	tc.t.Helper()
	s, err := n.Status()
	if err != nil {
		tc.t.Fatalf("%v", err)
	}
	return s
}

// PublicKey returns the node's public key.
func (tc *TestCluster) PublicKey(n *Node) string {
	tc.t.Helper()
	k, err := n.PublicKey()
	if err != nil {
		tc.t.Fatalf("%v", err)
	}
	return k
}

// WireGuard returns the parsed `wg show IF dump` of the node.
func (tc *TestCluster) WireGuard(n *Node) *WGDevice {
	tc.t.Helper()
	d, err := n.WireGuard()
	if err != nil {
		tc.t.Fatalf("%v", err)
	}
	return d
}

// WaitFor polls cond (see WaitFor) and fails the test with what on timeout.
// It returns how long the wait took.
func (tc *TestCluster) WaitFor(what string, timeout time.Duration, cond func() error) time.Duration {
	tc.t.Helper()
	start := time.Now()
	if err := WaitFor(timeout, cond); err != nil {
		tc.t.Fatalf("%s: %v", what, err)
	}
	return time.Since(start)
}

// WaitMesh waits until every node lists every other one as up and returns
// how long it took.
func (tc *TestCluster) WaitMesh(timeout time.Duration, nodes ...*Node) time.Duration {
	tc.t.Helper()
	d, err := WaitMesh(timeout, nodes...)
	if err != nil {
		tc.t.Fatalf("full mesh: %v", err)
	}
	return d
}

// Ping pings addr from n until a reply arrives (within timeout).
func (tc *TestCluster) Ping(n *Node, addr string, timeout time.Duration) {
	tc.t.Helper()
	start := time.Now()
	tries, err := PingWithin(n, addr, timeout)
	if err != nil {
		tc.t.Fatalf("%s -> %s: %v", n.Name, addr, err)
	}
	if tries > 1 {
		tc.t.Logf("%s -> %s: answered at attempt %d, %v after the first", n.Name, addr, tries, time.Since(start).Round(time.Millisecond))
	}
}
