// Command demo starts and stops a four-node segmesh demo in network
// namespaces with fixed names, for people to look around in:
//
//	go run ./test/cmd/demo up [-bin PATH]   # (make demo) clears an old demo, starts web-1, web-2, app-1, db-1
//	go run ./test/cmd/demo down             # (make demo-down) idempotent teardown
//	go run ./test/cmd/demo shell            # (make demo-shell) a shell where segmesh talks to web-1
//
// Namespaces are smdemo-<node> plus the underlay smdemo-ul; node directories
// (config, keys, state, control socket, log, pid file) are under
// /tmp/segmesh-demo/<node>; the binary is built to /tmp/segmesh-demo/bin
// with the version and commit make demo links this program with (-X
// main.version and main.commit, as for every build), else git's. The demo shell
// has that directory first in PATH and SEGMESH_CONFIG naming web-1's config
// (whose control_socket is web-1's), so bare `segmesh status` works in it;
// /tmp/segmesh-demo/shellrc is its rc file. The live view (segmesh top on
// app-1) starts only when stdin and stdout are both terminals.
// app-1 declares two workloads, api and cron, by cgroups below the cgroup2
// mount (segmesh-demo-<random>/api and /cron), each running one process
// of the traffic generator that connects to db-1 tcp/5432: the policy lets
// api through, cron is refused at once by app-1's egress check. The
// daemons, the traffic generator and the workloads' processes run detached
// and outlive this program; down removes them and the cgroups. Needs root.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/segmesh/segmesh/test/harness"
)

const (
	prefix  = "smdemo"
	baseDir = "/tmp/segmesh-demo"
)

// Set by the linker: make demo passes the -X main.version and main.commit
// it builds segmesh with.
var (
	version string
	commit  string
)

// demoNodes are the demo's nodes in start order; the first is everyone's
// seed.
var demoNodes = []struct{ name, role string }{
	{"web-1", "web"}, {"web-2", "web"}, {"app-1", "app"}, {"db-1", "db"},
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: demo up [-bin PATH] [-grace D] | demo down | demo shell")
	}
	switch args[0] {
	case "traffic":
		return traffic()
	case "worker":
		return worker(args[1:])
	case "dial":
		return dialOnce(args[1:], stdout)
	case "up":
		fs := flag.NewFlagSet("up", flag.ContinueOnError)
		bin := fs.String("bin", "", "segmesh binary to use (default: build it to "+filepath.Join(baseDir, "bin", "segmesh")+")")
		grace := fs.Duration("grace", 30*time.Second, "dead_peer_grace of the demo nodes")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return up(*bin, *grace, stdout, stderr)
	case "down":
		stopTraffic()
		if err := errors.Join(removeCgroups(), harness.Teardown(prefix, baseDir)); err != nil {
			return fmt.Errorf("down: %w", err)
		}
		fmt.Fprintln(stdout, "segmesh demo removed")
		return nil
	case "shell":
		return shell(stdout)
	default:
		return fmt.Errorf("unknown command %q (want up, down or shell)", args[0])
	}
}

func up(bin string, grace time.Duration, stdout, stderr io.Writer) error {
	if p := harness.NetnsProblem(); p != "" {
		return errors.New(p)
	}
	demoBin := filepath.Join(baseDir, "bin", "segmesh")
	var keep []byte // a given binary inside baseDir survives the teardown
	if bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return fmt.Errorf("-bin: %w", err)
		}
		bin = abs
		if strings.HasPrefix(bin, baseDir+string(filepath.Separator)) {
			if keep, err = os.ReadFile(bin); err != nil {
				return fmt.Errorf("-bin: %w", err)
			}
			bin = demoBin
		}
	}
	stopTraffic()
	if err := errors.Join(removeCgroups(), harness.Teardown(prefix, baseDir)); err != nil {
		return fmt.Errorf("clear previous demo: %w", err)
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		return fmt.Errorf("the workloads of %s need nsenter (util-linux): %w", appNode, err)
	}
	switch {
	case keep != nil:
		if err := os.MkdirAll(filepath.Dir(demoBin), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(demoBin, keep, 0o755); err != nil {
			return err
		}
	case bin == "":
		bin = demoBin
		fmt.Fprintf(stdout, "building %s ...\n", bin)
		if err := harness.BuildPackageLDFlags("cmd/segmesh", bin, ldflags()); err != nil {
			return err
		}
	default: // the demo shell's PATH has the binary as segmesh
		if err := os.MkdirAll(filepath.Dir(demoBin), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(bin, demoBin); err != nil {
			return err
		}
	}
	if out, err := exec.Command(bin, "version").Output(); err == nil {
		// "segmesh v1.2.0 (commit abc1234)"
		l := strings.SplitN(strings.TrimSpace(string(out)), "\n", 3)
		if len(l) >= 2 {
			fmt.Fprintf(stdout, "%s (%s)\n", l[0], l[1])
		}
	}
	cgBase, err := createCgroups()
	if err != nil {
		return err
	}
	c, err := harness.New(harness.Config{
		Binary:        bin,
		Prefix:        prefix,
		BaseDir:       baseDir,
		DeadPeerGrace: grace,
		LogLevel:      "info",
		Detach:        true,
		Logf:          func(f string, a ...any) { fmt.Fprintf(stdout, f+"\n", a...) },
	})
	if err != nil {
		return errors.Join(err, removeCgroups())
	}
	fail := func(err error) error {
		c.Report(stderr)
		stopTraffic()
		return errors.Join(err, c.Close(), removeCgroups(), harness.Teardown(prefix, baseDir))
	}
	var nodes []*harness.Node
	for i, dn := range demoNodes {
		spec := harness.NodeSpec{
			Name:      dn.name,
			Tags:      map[string]string{"role": dn.role},
			Interface: prefix + "-" + dn.name,
		}
		if i > 0 {
			spec.Join = []string{nodes[0].GossipAddr()}
		}
		if dn.name == appNode {
			// Its daemon follows the workloads' cgroups: started with
			// nsenter --net, which keeps the host's /sys.
			spec.HostSys = true
			var wls []map[string]any
			for _, wl := range demoWorkloads {
				wls = append(wls, map[string]any{"name": wl.name, "cgroup": cgBase + "/" + wl.name, "tags": map[string]string{"svc": wl.svc}})
			}
			spec.Set = map[string]any{"workloads": wls}
		}
		n, err := c.AddNode(spec)
		if err != nil {
			return fail(err)
		}
		if err := n.Start(); err != nil {
			return fail(err)
		}
		nodes = append(nodes, n)
	}
	took, err := harness.WaitMesh(60*time.Second, nodes...)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "full mesh of %d nodes after %v\n\n", len(nodes), took.Round(time.Millisecond))
	out, err := nodes[0].StatusOutput()
	if err != nil {
		return fail(err)
	}
	byName := map[string]*harness.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	if err := applyPolicy(stdout, bin, byName); err != nil {
		return fail(err)
	}
	if out, err = nodes[0].StatusOutput(); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "$ segmesh status --socket %s\n%s\n", nodes[0].Socket, out)
	if err := startTraffic(stdout); err != nil {
		return fail(err)
	}
	if err := writeShellRC(); err != nil {
		return fail(err)
	}
	if err := describe(stdout, nodes); err != nil {
		return err
	}
	if !liveView(os.Stdin, os.Stdout) {
		fmt.Fprintf(stdout, "\n%s\n", nextSteps)
		return nil
	}
	return runTop(stdout, bin, byName[appNode])
}

// nextSteps ends the demo's output.
const nextSteps = "Next: make demo-shell   (tear down: make demo-down, or: go run ./test/cmd/demo down)"

// liveView reports whether the demo ends in the live view: only when it
// reads keys from a terminal and draws on one. Piped to tee or a file, the
// UI would write its escape codes there at a guessed 80x24, not knowing
// the size of the terminal the pipe ends in.
func liveView(stdin, stdout *os.File) bool {
	return isTerminal(stdin) && isTerminal(stdout)
}

// runTop ends an interactive demo in the live view of app-1 (its
// workloads, and the denials of cron and of the node at its egress). The
// UI draws on stdout, a terminal, and takes its size from it.
func runTop(stdout io.Writer, bin string, app1 *harness.Node) error {
	fmt.Fprintf(stdout, "\nStarting the live view of %s (1-5 views, Tab, / filter, q quits) ...\n", app1.Name)
	top := exec.Command(bin, "top", "--socket", app1.Socket)
	top.Stdin, top.Stdout, top.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := top.Run()
	fmt.Fprintf(stdout, "The demo is still running: look around with the commands above.\n%s\n", nextSteps)
	return err
}

// isTerminal reports whether f is a terminal (/dev/null is a character
// device too, but no terminal).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// ldflags are the -X flags of the segmesh build: this program's version
// and commit, else what the Makefile would compute (git describe), else
// none (segmesh dev, commit unknown).
func ldflags() string {
	v, c := version, commit
	root, _ := harness.ModuleRoot()
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	if v == "" {
		v = git("describe", "--tags", "--always", "--dirty")
	}
	if c == "" {
		c = git("rev-parse", "--short", "HEAD")
	}
	var f []string
	if v != "" {
		f = append(f, "-X main.version="+v)
	}
	if c != "" {
		f = append(f, "-X main.commit="+c)
	}
	return strings.Join(f, " ")
}

// describe prints the nodes and how to look around: the commands as typed
// in the demo shell.
func describe(w io.Writer, nodes []*harness.Node) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAMESPACE\tUNDERLAY\tOVERLAY IPv4\tOVERLAY IPv6\tINTERFACE")
	addr := map[string]string{}
	for _, n := range nodes {
		st, err := n.Status()
		if err != nil {
			return err
		}
		addr[n.Name] = st.Self.Address
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Namespace, n.Addr, st.Self.Address, st.Self.Address6, n.Interface)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	web1, db1 := nodes[0], nodes[len(nodes)-1]
	var app1 *harness.Node
	for _, n := range nodes {
		if n.Name == appNode {
			app1 = n
		}
	}
	bin := filepath.Join(baseDir, "bin", "segmesh")
	lines := []string{
		"",
		"Look around in the demo shell, make demo-shell (or: bash --rcfile " + shellRC + "):",
		fmt.Sprintf("segmesh is %s there, and SEGMESH_CONFIG=%s points it at %s.", bin, web1.ConfigPath, web1.Name),
		"  segmesh status",
		fmt.Sprintf("  segmesh status --json --socket %s", db1.Socket),
		fmt.Sprintf("  segmesh status --socket %s   # app-1's workloads", app1.Socket),
	}
	// Commands of features this build may not have yet are shown only when
	// they work.
	if exec.Command(bin, "top", "--help").Run() == nil {
		lines = append(lines,
			fmt.Sprintf("  segmesh top --socket %s   # Flows (4): cron's refused connects, direction out", app1.Socket),
			"  segmesh top")
	}
	lines = append(lines,
		"  segmesh flows --fleet   # every node's flows, allowed ones too",
		"  segmesh map --fleet --format svg --out map.svg   # the dependency map",
		"  segmesh policy suggest --fleet")
	lines = append(lines, fmt.Sprintf("  cat %s/*/cgroup.procs   # the workloads' processes", cgroupTree()))
	lines = append(lines,
		fmt.Sprintf("  ip netns exec %s ping -c3 %s        # web-1 -> db-1 over the mesh", web1.Namespace, addr[db1.Name]),
		fmt.Sprintf("  ip netns exec %s wg show %s", web1.Namespace, web1.Interface),
	)
	if _, err := web1.Exec("nft", "list", "table", "inet", "segmesh"); err == nil {
		lines = append(lines, fmt.Sprintf("  ip netns exec %s nft list table inet segmesh", web1.Namespace))
	}
	lines = append(lines,
		fmt.Sprintf("  logs: %s/<node>/log, configs: %s/<node>/segmesh.yaml", baseDir, baseDir),
		fmt.Sprintf("  kill a node: kill $(cat %s)", filepath.Join(baseDir, "app-1", "segmesh.pid")),
	)
	_, err := fmt.Fprintln(w, strings.Join(lines, "\n"))
	return err
}
