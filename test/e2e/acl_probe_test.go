package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// denyTimeout is how long a probe waits before calling a flow dropped.
const denyTimeout = time.Second

// Probe results (segmesh-probe dial words; ping maps to ok or timeout).
const (
	resOK      = "ok"
	resTimeout = "timeout"
)

// refusedAtSender is what a process on a segmesh node gets for a flow the
// policy does not grant its identity: its own node's egress check refuses
// it at once (DESIGN.md "Workloads", egress) — TCP "refused" (a reset),
// UDP "filtered" (the send fails: ICMP administratively prohibited), ping
// no reply ("timeout", it fails at once too). A receiver's own drop, seen
// from senders without segmesh, stays resTimeout.
func refusedAtSender(f flow) string {
	switch f.proto {
	case "tcp":
		return "refused"
	case "udp":
		return "filtered"
	}
	return resTimeout
}

// bypassed holds the namespaces of nodes that play an attacker with root
// on its own node: its egress check is off (see bypassEgress), so what it
// sends reaches the receivers, whose ingress must drop it.
var bypassed sync.Map

// bypassEgress switches off n's egress check (the jump from chain output
// to mesh_out goes) and marks n so that checkFlows expects the receivers'
// drop (resTimeout) for its denied flows. The daemon puts the jump back
// when it rewrites its egress (a policy, segment or cgroup change), so
// checkFlows switches it off again before each probe.
func bypassEgress(t *testing.T, n *harness.Node) {
	t.Helper()
	bypassed.Store(n.Namespace, true)
	t.Cleanup(func() {
		bypassed.Delete(n.Namespace)
		// Back as the daemon writes it (no-op when it rewrote it already).
		if out, code, _ := nsExec(n.Namespace, 10*time.Second, "nft", "list", "chain", "inet", "segmesh", "output"); code == 0 && !strings.Contains(string(out), "jump mesh_out") {
			_, _, _ = nsExec(n.Namespace, 10*time.Second, "nft", "add", "rule", "inet", "segmesh", "output", "oifname", n.Interface, "jump", "mesh_out")
		}
	})
	flushOutput(t, n)
}

func flushOutput(t *testing.T, n *harness.Node) {
	t.Helper()
	if ok, err := hasTable(n.Namespace, "inet", "segmesh"); err == nil && !ok {
		return // no daemon (or it removed its table): nothing to switch off
	}
	if out, code, err := nsExec(n.Namespace, 10*time.Second, "nft", "flush", "chain", "inet", "segmesh", "output"); err != nil || code != 0 {
		t.Fatalf("%s: nft flush chain inet segmesh output: %v (exit %d): %s", n.Name, err, code, out)
	}
}

// deniedResult is the result a denied flow from src gives: resTimeout from
// an egress-bypassed attacker, refusedAtSender otherwise.
func deniedResult(src *harness.Node, f flow) string {
	if _, ok := bypassed.Load(src.Namespace); ok {
		return resTimeout
	}
	return refusedAtSender(f)
}

// flow is one connection attempt: proto tcp, udp or icmp (port ignored).
type flow struct {
	proto string
	addr  netip.Addr
	port  int
}

func (f flow) String() string {
	if f.proto == "icmp" {
		return "icmp " + f.addr.String()
	}
	return f.proto + " " + netip.AddrPortFrom(f.addr, uint16(f.port)).String()
}

// nsExec runs argv in namespace ns and returns its combined output and exit
// code; err is set only when the command could not run to completion.
func nsExec(ns string, timeout time.Duration, argv ...string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return buf.Bytes(), 0, nil
	case ctx.Err() != nil:
		return buf.Bytes(), -1, fmt.Errorf("%s in %s: %w", strings.Join(argv, " "), ns, ctx.Err())
	case errors.As(err, &ee):
		return buf.Bytes(), ee.ExitCode(), nil
	}
	return buf.Bytes(), -1, fmt.Errorf("%s in %s: %w", strings.Join(argv, " "), ns, err)
}

// probeFlows tries every flow from namespace ns at once (tcp/udp in one
// segmesh-probe dial, icmp by ping) and returns each flow's result word:
// ok, timeout, refused, noecho, unreachable or error.
func probeFlows(ns string, timeout time.Duration, flows []flow) (map[flow]string, error) {
	out := make(map[flow]string, len(flows))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	args := []string{bins.Probe, "dial", "-timeout", timeout.String()}
	byKey := map[string]flow{}
	for _, f := range flows {
		if f.proto == "icmp" {
			wg.Add(1)
			go func() {
				defer wg.Done()
				secs := strconv.FormatFloat(timeout.Seconds(), 'f', 1, 64)
				b, code, err := nsExec(ns, timeout+10*time.Second, "ping", "-n", "-c1", "-W", secs, f.addr.String())
				res := resOK
				switch {
				case err != nil:
					fail(err)
					return
				case code == 1:
					res = resTimeout
				case code != 0:
					res = "error: " + strings.TrimSpace(string(b))
				}
				mu.Lock()
				out[f] = res
				mu.Unlock()
			}()
			continue
		}
		target := netip.AddrPortFrom(f.addr, uint16(f.port)).String()
		args = append(args, f.proto, target)
		byKey[f.proto+" "+target] = f
	}
	if len(byKey) > 0 {
		b, _, err := nsExec(ns, timeout+30*time.Second, args...)
		if err != nil {
			fail(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 3 {
				continue
			}
			if f, ok := byKey[fields[0]+" "+fields[1]]; ok {
				mu.Lock()
				out[f] = fields[2]
				mu.Unlock()
			}
		}
		if err == nil && len(out) < len(byKey) {
			fail(fmt.Errorf("probe dial in %s: unexpected output:\n%s", ns, b))
		}
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// probeOne tries one flow from ns.
func probeOne(ns string, timeout time.Duration, f flow) (string, error) {
	res, err := probeFlows(ns, timeout, []flow{f})
	return res[f], err
}

// startServer runs segmesh-probe serve in ns and waits until it listens.
func startServer(t *testing.T, tc *harness.TestCluster, ns, name string, tcp, udp []int) *harness.Proc {
	t.Helper()
	argv := []string{bins.Probe, "serve", "-tcp", joinInts(tcp), "-udp", joinInts(udp)}
	p := tc.Spawn(ns, name, argv...)
	if err := p.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return p
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// waitNodes polls cond for every node concurrently (every 50 ms) until it
// holds for each or timeout passes, and returns when each first held,
// measured from start.
func waitNodes(nodes []*harness.Node, start time.Time, timeout time.Duration, cond func(*harness.Node) error) (map[*harness.Node]time.Duration, error) {
	at := map[*harness.Node]time.Duration{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(timeout)
			for {
				err := cond(n)
				if err == nil {
					mu.Lock()
					at[n] = time.Since(start)
					mu.Unlock()
					return
				}
				if time.Now().After(deadline) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
					mu.Unlock()
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return at, errors.Join(errs...)
}
