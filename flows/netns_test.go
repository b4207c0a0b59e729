package flows

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// requireRoot skips a test that needs root, network namespaces, ip(8) and
// nft(8), unless CI=true, where it fails instead.
func requireRoot(t testing.TB) {
	t.Helper()
	problem := ""
	switch {
	case os.Geteuid() != 0:
		problem = "not root"
	case func() bool { _, err := exec.LookPath("ip"); return err != nil }():
		problem = "ip(8) not found"
	case func() bool { _, err := exec.LookPath("nft"); return err != nil }():
		problem = "nft(8) not found"
	}
	if problem == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("test needs root and network namespaces (CI=true): %s", problem)
	}
	t.Skipf("skipping: %s (set CI=true to make this a failure)", problem)
}

var nsSeq atomic.Int32

// testNS is a network namespace created for one test and deleted at its end.
type testNS struct {
	t    testing.TB
	name string
	h    netns.NsHandle
}

func newTestNS(t testing.TB) *testNS {
	t.Helper()
	name := fmt.Sprintf("smflows%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &testNS{t: t, name: name}
	t.Cleanup(func() {
		if ns.h.IsOpen() {
			_ = ns.h.Close()
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	ns.h = h
	ns.run("ip", "link", "set", "lo", "up")
	return ns
}

// run runs a command inside the namespace; it fails the test on error.
func (ns *testNS) run(args ...string) string {
	ns.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		ns.t.Fatalf("ip netns exec %s %s: %v: %s", ns.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nft loads a ruleset into the namespace.
func (ns *testNS) nft(ruleset string) {
	ns.t.Helper()
	f := filepath.Join(ns.t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(f, []byte(ruleset), 0o600); err != nil {
		ns.t.Fatal(err)
	}
	ns.run("nft", "-f", f)
}

// do runs fn on an OS thread switched into the namespace: sockets fn creates
// belong to the namespace and keep working after fn returns. An error of fn
// fails the test (fn runs on another goroutine, so it must not call
// t.Fatal itself).
func (ns *testNS) do(fn func() error) {
	ns.t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns.h); err != nil {
			done <- err
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime discards it.
			done <- fmt.Errorf("restore netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		done <- fnErr
	}()
	if err := <-done; err != nil {
		ns.t.Fatalf("in netns %s: %v", ns.name, err)
	}
}

// waitUp waits until link dev is operationally up: before that, its qdisc
// is still the dropping noop one (linkwatch may take up to a second).
func (ns *testNS) waitUp(dev string) {
	ns.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := ns.run("ip", "-o", "link", "show", "dev", dev)
		if strings.Contains(out, "state UP") {
			return
		}
		if time.Now().After(deadline) {
			ns.t.Fatalf("link %s in %s not up: %s", dev, ns.name, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Test topology: namespace a (10.231.0.2, fd99:231::2 on veth va) talks to
// namespace b (10.231.0.1, fd99:231::1 on vb). In b, table inet flowstest
// logs every original-direction packet addressed to b's veth addresses to
// NFLOG group testGroup, like acl's mesh_in chain does.
const (
	testGroup = 8477
	aAddr4    = "10.231.0.2"
	bAddr4    = "10.231.0.1"
	aAddr6    = "fd99:231::2"
	bAddr6    = "fd99:231::1"
)

type nsPair struct{ a, b *testNS }

func newNSPair(t *testing.T) *nsPair {
	t.Helper()
	requireRoot(t)
	p := &nsPair{a: newTestNS(t), b: newTestNS(t)}
	p.a.run("ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", p.b.name)
	p.a.run("ip", "addr", "add", aAddr4+"/24", "dev", "va")
	p.a.run("ip", "-6", "addr", "add", aAddr6+"/64", "dev", "va", "nodad")
	p.a.run("ip", "link", "set", "va", "up")
	p.b.run("ip", "addr", "add", bAddr4+"/24", "dev", "vb")
	p.b.run("ip", "-6", "addr", "add", bAddr6+"/64", "dev", "vb", "nodad")
	p.b.run("ip", "link", "set", "vb", "up")
	p.a.waitUp("va")
	p.b.waitUp("vb")
	p.b.nft(fmt.Sprintf(`table inet flowstest {
	chain pre {
		type filter hook prerouting priority -150; policy accept;
		iifname "vb" ip daddr %s ct direction original log group %d snaplen 128
		iifname "vb" ip6 daddr %s ct direction original log group %d snaplen 128
	}
}
`, bAddr4, testGroup, bAddr6, testGroup))
	return p
}
