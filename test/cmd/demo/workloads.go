package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/segmesh/segmesh/cgroup"
	"github.com/segmesh/segmesh/cgroup/cgrouptest"
)

// workload is one local workload of app-1: its name, the tag the policy
// selects it by, and the command name its demo process runs under (a
// symlink to the demo binary, so /proc/PID/comm and the flows show it).
type workload struct {
	name, svc, command string
}

// The app node and its workloads: api may reach db-1 tcp/5432 (rule
// api-to-db), cron may not.
const appNode = "app-1"

var demoWorkloads = []workload{
	{"api", "api", "api-server"},
	{"cron", "cron", "cron-job"},
}

// cgroupPrefix names the demo's cgroup tree below the cgroup2 mount:
// cgroupPrefix-<random>/<workload>; cgroupFile records the tree's path.
const cgroupPrefix = "segmesh-demo-"

var cgroupFile = filepath.Join(baseDir, "cgroup")

// createCgroups makes a fresh tree cgroupPrefix<random> with one cgroup per
// workload below the cgroup2 mount and returns its path relative to the
// mount (the config's form).
func createCgroups() (string, error) {
	mount, err := cgroup.Mount()
	if err != nil {
		return "", fmt.Errorf("cgroup2 mount (workloads need cgroup v2): %w", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	base := "/" + cgroupPrefix + hex.EncodeToString(b)
	if err := os.Mkdir(filepath.Join(mount, base), 0o755); err != nil {
		return "", fmt.Errorf("create demo cgroup: %w", err)
	}
	for _, wl := range demoWorkloads {
		if err := os.Mkdir(filepath.Join(mount, base, wl.name), 0o755); err != nil {
			return "", errors.Join(fmt.Errorf("create demo cgroup: %w", err), removeCgroups())
		}
	}
	if err := os.MkdirAll(baseDir, 0o755); err != nil {
		return "", err
	}
	return base, os.WriteFile(cgroupFile, []byte(base), 0o644)
}

// demoCgroup is the directory of workload name's cgroup of the running
// demo.
func demoCgroup(name string) (string, error) {
	mount, err := cgroup.Mount()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(cgroupFile)
	if err != nil {
		return "", fmt.Errorf("demo cgroups: %w", err)
	}
	return filepath.Join(mount, strings.TrimSpace(string(b)), name), nil
}

// removeCgroups kills the processes of every demo cgroup tree
// (cgroupPrefix* below the mount, so also those of a demo whose base
// directory is gone) and removes the trees. Nothing there is fine.
func removeCgroups() error {
	mount, err := cgroup.Mount()
	if err != nil {
		return nil // no cgroup2 mount: the demo made none
	}
	trees, _ := filepath.Glob(filepath.Join(mount, cgroupPrefix+"*"))
	var errs []error
	for _, tree := range trees {
		subs, _ := filepath.Glob(filepath.Join(tree, "*", "cgroup.procs"))
		for _, s := range subs {
			if err := cgrouptest.Remove(filepath.Dir(s)); err != nil {
				errs = append(errs, err)
			}
		}
		if err := cgrouptest.Remove(tree); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// dialOnce is `demo dial ADDR`: one TCP connect, printed as "ok DURATION"
// or "refused DURATION" / "error DURATION: ERR".
func dialOnce(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: demo dial HOST:PORT")
	}
	start := time.Now()
	c, err := net.DialTimeout("tcp", args[0], 2*time.Second)
	d := time.Since(start)
	switch {
	case err == nil:
		c.Close()
		fmt.Fprintf(stdout, "ok %v\n", d)
	case errors.Is(err, syscall.ECONNREFUSED):
		fmt.Fprintf(stdout, "refused %v\n", d)
	default:
		fmt.Fprintf(stdout, "error %v: %v\n", d, err)
	}
	return nil
}

// dialFromWorkload runs `demo dial addr` in workload wl's cgroup on the
// app node and describes the outcome.
func dialFromWorkload(wl workload, addr string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	dir, err := demoCgroup(wl.name)
	if err != nil {
		return "", err
	}
	out, err := cgrouptest.Command(prefix+"-"+appNode, dir, self, "dial", addr).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dial from workload %s: %w: %s", wl.name, err, out)
	}
	word, rest, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	switch word {
	case "ok":
		return "connected (allowed)", nil
	case "refused":
		d, _ := time.ParseDuration(rest)
		return fmt.Sprintf("connection refused after %v (denied at once by %s's egress)", d.Round(10*time.Microsecond), appNode), nil
	default:
		return "failed: " + string(out), nil
	}
}

// worker is `demo worker ADDR`, the process of a workload: a connection
// to ADDR (16 KiB sent) once a second until SIGTERM.
func worker(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: demo worker HOST:PORT")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if c, err := net.DialTimeout("tcp", args[0], 800*time.Millisecond); err == nil {
			_, _ = c.Write(make([]byte, 16<<10))
			c.Close()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// startWorkers starts one worker per workload in its cgroup on the app
// node, dialing addr, from the demo binary bin (through a symlink named
// after the workload's command).
func startWorkers(bin, addr string) ([]*exec.Cmd, error) {
	var cmds []*exec.Cmd
	for _, wl := range demoWorkloads {
		dir, err := demoCgroup(wl.name)
		if err != nil {
			return cmds, err
		}
		link := filepath.Join(filepath.Dir(bin), wl.command)
		_ = os.Remove(link)
		if err := os.Symlink(filepath.Base(bin), link); err != nil {
			return cmds, err
		}
		cmd := cgrouptest.Command(prefix+"-"+appNode, dir, link, "worker", addr)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return cmds, fmt.Errorf("start workload %s: %w", wl.name, err)
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

// stopWorkers ends the workers and waits for them.
func stopWorkers(cmds []*exec.Cmd) {
	for _, c := range cmds {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range cmds {
		_ = c.Wait()
	}
}

// cgroupTree is the directory of the demo's cgroup tree ("" when
// unknown).
func cgroupTree() string {
	dir, _ := demoCgroup("")
	return dir
}
