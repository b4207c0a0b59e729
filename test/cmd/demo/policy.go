package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netns"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/test/harness"
)

// demoPolicy is the example policy (packaging/policy.example.yaml) with
// app-1's workloads: web -> app tcp/8080, only the api workload (svc=api)
// -> db tcp/5432, ping everywhere, and web reads every node's peer API
// (tcp/9477, for --fleet). The rest of app-1 — its cron workload
// and processes in no workload — may not reach the database.
const demoPolicy = `# segmesh demo policy: web -> app, the api workload -> db, ping everywhere, web reads the fleet.
mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
  api: {svc: api}   # app-1's api workload (its processes' cgroup)
rules:
  - name: web-to-app
    from: [web]
    to: [app]
    ports: [tcp/8080]
  - name: api-to-db
    from: [api]
    to: [db]
    ports: [tcp/5432]
  - name: ping
    from: ["*"]
    to: ["*"]
    ports: [icmp]
  - name: fleet-view   # web-1 reads every node's peer API: segmesh flows/map --fleet
    from: [web]
    to: ["*"]
    ports: [tcp/9477]
tests:
  - {from: web, to: app, port: tcp/8080, expect: allow}
  - {from: api, to: db,  port: tcp/5432, expect: allow}
  - {from: app, to: db,  port: tcp/5432, expect: deny}
  - {from: web, to: db,  port: tcp/5432, expect: deny}
  - {from: db,  to: web, port: tcp/8080, expect: deny}
  - {from: app, to: web, port: udp/8080, expect: deny}
  - {from: "*", to: db,  port: icmp,     expect: allow}
  - {from: web, to: db,  port: tcp/9477, expect: allow}
  - {from: db,  to: web, port: tcp/9477, expect: deny}
`

// applyPolicy applies the demo policy on web-1, waits until every node
// enforces it, then shows allowed and denied connections — from the
// nodes and from app-1's workloads — each with `policy explain`.
func applyPolicy(w io.Writer, bin string, nodes map[string]*harness.Node) error {
	file := filepath.Join(baseDir, "policy.yaml")
	if err := os.WriteFile(file, []byte(demoPolicy), 0o644); err != nil {
		return err
	}
	web1, app1, db1 := nodes["web-1"], nodes[appNode], nodes["db-1"]
	out, err := cli(bin, "policy", "apply", file, "--socket", web1.Socket)
	fmt.Fprintf(w, "$ segmesh policy apply %s\n%s", file, out)
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
		if err := showConnection(w, bin, c.from, c.to, c.port, nil); err != nil {
			return err
		}
	}
	if err := showWorkloads(w, app1); err != nil {
		return err
	}
	for i := range demoWorkloads {
		if err := showConnection(w, bin, app1, db1, dbPort, &demoWorkloads[i]); err != nil {
			return err
		}
	}
	return nil
}

// showWorkloads waits until app-1 follows both workloads' cgroups and
// explains them.
func showWorkloads(w io.Writer, app1 *harness.Node) error {
	var wls []api.Workload
	if err := harness.WaitFor(10*time.Second, func() error {
		st, err := api.NewClient(app1.Socket).Status(context.Background())
		if err != nil {
			return err
		}
		wls = st.Self.Workloads
		for _, wl := range wls {
			if wl.State != "active" {
				return fmt.Errorf("workload %s is %s %s", wl.Name, wl.State, wl.Reason)
			}
		}
		if len(wls) != len(demoWorkloads) {
			return fmt.Errorf("%s has %d workloads, want %d", app1.Name, len(wls), len(demoWorkloads))
		}
		return nil
	}); err != nil {
		return fmt.Errorf("workloads of %s: %w", app1.Name, err)
	}
	fmt.Fprintf(w, "%s runs two local workloads, each a cgroup its processes run in: they get the node's tags plus the workload's,\n"+
		"and %s checks every connection they open (egress) against the policy:\n", app1.Name, app1.Name)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, wl := range wls {
		fmt.Fprintf(tw, "  %s\tcgroup %s\ttags %s\tsegments %s\n", wl.Name, wl.Cgroup, tagList(wl.Tags), strings.Join(wl.Segments, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "  api may reach db-1 tcp/%d (rule api-to-db); cron and processes in no workload may not: refused at once.\n\n", dbPort)
	return nil
}

func tagList(tags map[string]string) string {
	var out []string
	for k, v := range tags {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// showConnection listens on to's overlay address, dials it from from (from
// the cgroup of from's workload wl when not nil), and prints the outcome
// and the policy's explanation.
func showConnection(w io.Writer, bin string, from, to *harness.Node, port int, wl *workload) error {
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
	src := from.Name
	var result string
	if wl != nil {
		src += "/" + wl.name
		if result, err = dialFromWorkload(*wl, addr); err != nil {
			return err
		}
	} else {
		result = dialResult(inNetns(from.Namespace, func() error {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}), from, to)
	}
	fmt.Fprintf(w, "%s -> %s tcp/%d: %s\n", src, to.Name, port, result)
	out, err := cli(bin, "policy", "explain", src, to.Name, fmt.Sprintf("tcp/%d", port), "--socket", from.Socket)
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
		err = nil // explain's exit status for a deny
	}
	fmt.Fprintf(w, "$ segmesh policy explain %s %s tcp/%d\n%s\n", src, to.Name, port, out)
	return err
}

// dialResult describes the outcome of a dial from from to to.
func dialResult(err error, from, to *harness.Node) string {
	var ne net.Error
	switch {
	case err == nil:
		return "connected (allowed)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (denied at once by " + from.Name + "'s egress)"
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out (denied: dropped by " + to.Name + ")"
	default:
		return "failed: " + err.Error()
	}
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
