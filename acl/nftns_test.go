package acl

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// requireRoot skips a test that needs root and network namespaces, unless
// CI=true, where it fails instead.
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
	name := fmt.Sprintf("smacl%d-%d", os.Getpid(), nsSeq.Add(1))
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

// run runs a command inside the namespace and returns its output; it fails
// the test on error.
func (ns *testNS) run(args ...string) string {
	ns.t.Helper()
	out, err := ns.try(args...)
	if err != nil {
		ns.t.Fatalf("ip netns exec %s %s: %v: %s", ns.name, strings.Join(args, " "), err, out)
	}
	return out
}

func (ns *testNS) try(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// do runs fn on an OS thread switched into the namespace: sockets fn creates
// belong to the namespace and keep working after fn returns.
func (ns *testNS) do(fn func()) {
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
		fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime discards it.
			done <- fmt.Errorf("restore netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	if err := <-done; err != nil {
		ns.t.Fatalf("in netns %s: %v", ns.name, err)
	}
}

// firewall opens a Firewall working in the namespace.
func (ns *testNS) firewall(cfg Config) *Firewall {
	ns.t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{ns.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f, err := NewFirewall(cfg, log, nftables.WithNetNSFd(int(ns.h)))
	if err != nil {
		ns.t.Fatal(err)
	}
	ns.t.Cleanup(func() { _ = f.Close() })
	return f
}

// gen returns the nftables ruleset generation of the namespace: every
// committed batch increments it by one.
func (ns *testNS) gen() uint32 {
	ns.t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.h)))
	if err != nil {
		ns.t.Fatal(err)
	}
	g, err := c.GetGen()
	if err != nil {
		ns.t.Fatalf("get nftables generation: %v", err)
	}
	return g.ID
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testConfig() Config {
	return Config{
		Interface: "smesh0",
		Network4:  netip.MustParsePrefix("100.80.0.0/16"),
		Network6:  netip.MustParsePrefix("fd5e:6d00::/48"),
	}
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
