package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"

	"github.com/segmesh/segmesh/test/harness"
)

// demoPolicy is the example policy: web -> app tcp/8080, app -> db tcp/5432,
// ping everywhere.
const demoPolicy = "packaging/policy.example.yaml"

// applyPolicy applies the example policy on web-1, waits until every node
// enforces it, then shows one allowed and one denied connection, each with
// `policy explain`.
func applyPolicy(w io.Writer, bin string, nodes map[string]*harness.Node) error {
	root, err := harness.ModuleRoot()
	if err != nil {
		return err
	}
	file := filepath.Join(root, demoPolicy)
	web1, app1, db1 := nodes["web-1"], nodes["app-1"], nodes["db-1"]
	out, err := cli(bin, "policy", "apply", file, "--socket", web1.Socket)
	fmt.Fprintf(w, "$ segmesh policy apply %s\n%s", demoPolicy, out)
	if err != nil {
		return err
	}
	st, err := web1.Status()
	if err != nil {
		return err
	}
	if err := harness.WaitFor(10*time.Second, func() error {
		for _, n := range nodes {
			s, err := n.Status()
			if err != nil {
				return err
			}
			if s.Policy.Hash != st.Policy.Hash {
				return fmt.Errorf("%s is on policy v%d", n.Name, s.Policy.Version)
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("policy did not reach every node: %w", err)
	}
	fmt.Fprintf(w, "every node enforces policy v%d\n\n", st.Policy.Version)
	for _, c := range []struct {
		from, to *harness.Node
		port     int
	}{{web1, app1, 8080}, {web1, db1, 5432}} {
		if err := showConnection(w, bin, c.from, c.to, c.port); err != nil {
			return err
		}
	}
	return nil
}

// showConnection listens on to's overlay address, dials it from from, and
// prints the outcome and the policy's explanation.
func showConnection(w io.Writer, bin string, from, to *harness.Node, port int) error {
	ts, err := to.Status()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(ts.Self.Address, fmt.Sprint(port))
	var ln net.Listener
	if err := inNetns(to.Namespace, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		return fmt.Errorf("listen in %s: %w", to.Name, err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	result := "connected (allowed)"
	if err := inNetns(from.Namespace, func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			result = "timed out (denied: dropped by " + to.Name + ")"
		} else {
			result = "failed: " + err.Error()
		}
	}
	fmt.Fprintf(w, "%s -> %s tcp/%d: %s\n", from.Name, to.Name, port, result)
	out, err := cli(bin, "policy", "explain", from.Name, to.Name, fmt.Sprintf("tcp/%d", port), "--socket", from.Socket)
	fmt.Fprintf(w, "$ segmesh policy explain %s %s tcp/%d\n%s\n", from.Name, to.Name, port, out)
	return err
}

// inNetns runs fn on a thread switched into the named namespace. Sockets
// created there keep that namespace after the thread switches back.
func inNetns(name string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("enter netns %s: %w", name, err)
	}
	defer netns.Set(orig)
	return fn()
}

func cli(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("segmesh %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
