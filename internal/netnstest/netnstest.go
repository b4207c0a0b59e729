// Package netnstest gives tests that need root a throwaway network
// namespace: created for one test, deleted at its end (also when it fails),
// with helpers to run commands and code inside it. Tests that cannot have
// one skip, unless CI=true, where they fail instead.
package netnstest

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

// RequireRoot skips t unless it runs as root with ip(8) and the given
// tools installed; under CI=true it fails instead of skipping.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	problem := ""
	if os.Geteuid() != 0 {
		problem = "not root"
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if problem != "" {
			break
		}
		if _, err := exec.LookPath(tool); err != nil {
			problem = tool + "(8) not found"
		}
	}
	if problem == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("test needs root and network namespaces (CI=true): %s", problem)
	}
	t.Skipf("skipping: %s (set CI=true to make this a failure)", problem)
}

var seq atomic.Int32

// NS is a network namespace created for one test.
type NS struct {
	t      testing.TB
	Name   string         // as `ip netns` knows it
	Handle netns.NsHandle // open for the test's lifetime
}

// New creates a namespace named prefix plus the process id and a sequence
// number, with its loopback up; the test's cleanup deletes it.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	name := fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{t: t, Name: name}
	t.Cleanup(func() {
		if ns.Handle.IsOpen() {
			_ = ns.Handle.Close()
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	ns.Handle = h
	ns.Run("ip", "link", "set", "lo", "up")
	return ns
}

// Run runs a command inside the namespace and returns its output; it fails
// the test on error.
func (ns *NS) Run(args ...string) string {
	ns.t.Helper()
	out, err := ns.Try(args...)
	if err != nil {
		ns.t.Fatalf("ip netns exec %s %s: %v: %s", ns.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// Try runs a command inside the namespace and returns its combined output
// and error.
func (ns *NS) Try(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Nft loads a ruleset into the namespace with nft -f.
func (ns *NS) Nft(ruleset string) {
	ns.t.Helper()
	f := filepath.Join(ns.t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(f, []byte(ruleset), 0o600); err != nil {
		ns.t.Fatal(err)
	}
	ns.Run("nft", "-f", f)
}

// Do runs fn on an OS thread switched into the namespace: sockets fn
// creates belong to the namespace and keep working after fn returns. An
// error of fn fails the test (fn runs on another goroutine, so it must not
// call t.Fatal itself).
func (ns *NS) Do(fn func() error) {
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
		if err := netns.Set(ns.Handle); err != nil {
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
		ns.t.Fatalf("in netns %s: %v", ns.Name, err)
	}
}

// WaitUp waits until link dev is operationally up: before that, its qdisc
// is still the dropping noop one (linkwatch may take up to a second).
func (ns *NS) WaitUp(dev string) {
	ns.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := ns.Run("ip", "-o", "link", "show", "dev", dev)
		if strings.Contains(out, "state UP") {
			return
		}
		if time.Now().After(deadline) {
			ns.t.Fatalf("link %s in %s not up: %s", dev, ns.Name, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
