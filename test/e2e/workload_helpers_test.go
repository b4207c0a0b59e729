package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/cgroup"
	"github.com/segmesh/segmesh/cgroup/cgrouptest"
	"github.com/segmesh/segmesh/test/harness"
)

// testCgroups is a tree of cgroups below the cgroup2 mount for one test,
// removed at its end (its processes killed first).
type testCgroups struct {
	t     *testing.T
	mount string
	base  string // path relative to the mount, like /segmesh-e2e-ab12cd
	made  []string
}

func newTestCgroups(t *testing.T) *testCgroups {
	t.Helper()
	mount, err := cgroup.Mount()
	if err != nil {
		t.Fatalf("cgroup2 mount: %v", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	c := &testCgroups{t: t, mount: mount, base: "/segmesh-e2e-" + hex.EncodeToString(b)}
	if err := os.Mkdir(c.dir(""), 0o755); err != nil {
		t.Fatalf("create test cgroup: %v", err)
	}
	t.Cleanup(func() {
		for i := len(c.made) - 1; i >= 0; i-- {
			_ = c.remove(c.made[i])
		}
		_ = os.Remove(c.dir(""))
	})
	return c
}

// path is a test cgroup's path relative to the mount (the config's form).
func (c *testCgroups) path(name string) string {
	if name == "" {
		return c.base
	}
	return c.base + "/" + name
}

func (c *testCgroups) dir(name string) string { return filepath.Join(c.mount, c.path(name)) }

func (c *testCgroups) mkdir(name string) {
	c.t.Helper()
	if err := os.Mkdir(c.dir(name), 0o755); err != nil {
		c.t.Fatalf("mkdir cgroup %s: %v", name, err)
	}
	c.made = append(c.made, name)
}

// remove kills the cgroup's processes and removes it.
func (c *testCgroups) remove(name string) error { return cgrouptest.Remove(c.dir(name)) }

// inCgroup returns argv run in namespace ns from inside cgroup name of c
// (c nil: the test's own cgroup, in no workload); see cgrouptest.Command.
func inCgroup(ns string, c *testCgroups, name string, argv ...string) *exec.Cmd {
	dir := ""
	if c != nil {
		dir = c.dir(name)
	}
	return cgrouptest.Command(ns, dir, argv...)
}

// dialResult is one target of a segmesh-probe dial run.
type dialResult struct {
	word string
	dur  time.Duration
	line string
}

// dialIn runs segmesh-probe dial for flows in namespace ns from cgroup
// name of c, and returns each flow's result.
func dialIn(t *testing.T, ns string, c *testCgroups, name string, extra []string, flows ...flow) map[flow]dialResult {
	t.Helper()
	args := append([]string{bins.Probe, "dial", "-timeout", "2s"}, extra...)
	for _, f := range flows {
		args = append(args, f.proto, flowTarget(f))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := inCgroup(ns, c, name, args...)
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	out, _ := cmd.CombinedOutput()
	res := map[flow]dialResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		for _, f := range flows {
			if fields[0] == f.proto && fields[1] == flowTarget(f) {
				r := dialResult{word: fields[2], line: sc.Text()}
				if i := strings.LastIndex(sc.Text(), "(in "); i >= 0 {
					r.dur, _ = time.ParseDuration(strings.TrimSuffix(sc.Text()[i+4:], ")"))
				}
				res[f] = r
			}
		}
	}
	if len(res) != len(flows) {
		t.Fatalf("probe dial in %s (cgroup %q): %d of %d results:\n%s", ns, name, len(res), len(flows), out)
	}
	return res
}

func flowTarget(f flow) string { return netip.AddrPortFrom(f.addr, uint16(f.port)).String() }

// lockedBuffer is a bytes.Buffer safe for a process writing and a test
// reading.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// selfWorkloads reads n's own workloads from its status.
func selfWorkloads(n *harness.Node) (map[string]api.Workload, error) {
	st, err := api.NewClient(n.Socket).Status(context.Background())
	if err != nil {
		return nil, err
	}
	out := map[string]api.Workload{}
	for _, w := range st.Self.Workloads {
		out[w.Name] = w
	}
	return out, nil
}

// peerWorkloads reads the workloads n lists for the peer with key.
func peerWorkloads(n *harness.Node, key string) (map[string]api.Workload, error) {
	st, err := api.NewClient(n.Socket).Status(context.Background())
	if err != nil {
		return nil, err
	}
	for _, p := range st.Peers {
		if p.PublicKey == key {
			out := map[string]api.Workload{}
			for _, w := range p.Workloads {
				out[w.Name] = w
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("no peer %s", key)
}

// workloadStates waits until n's own workloads have the states.
func workloadStates(tc *harness.TestCluster, n *harness.Node, want map[string]string) {
	tc.WaitFor(fmt.Sprintf("%s's workloads %v", n.Name, want), 10*time.Second, func() error {
		ws, err := selfWorkloads(n)
		if err != nil {
			return err
		}
		for name, state := range want {
			if ws[name].State != state {
				return fmt.Errorf("%s is %q (%s), want %s", name, ws[name].State, ws[name].Reason, state)
			}
		}
		return nil
	})
}
