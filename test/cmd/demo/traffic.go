package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/segmesh/segmesh/api"
)

// trafficPID is the pid file of the detached traffic generator.
var trafficPID = filepath.Join(baseDir, "traffic.pid")

// flow is one connection the generator keeps making.
type flow struct {
	from, to string
	port     int
}

// demoTraffic: allowed flows between segments, and denied ones — refused
// at once by the sender's egress, so they show in the senders' flows
// (direction out) — from every node. The workloads of app-1 add theirs
// (see demoWorkloads): api -> db-1 tcp/5432 allowed, cron refused.
var demoTraffic = []flow{
	{"web-1", "app-1", 8080}, {"web-2", "app-1", 8080}, // allowed
	{"web-1", "db-1", 5432}, {"app-1", "web-1", 8080}, {"db-1", "web-1", 22}, {"web-2", "web-1", 5432}, // denied
}

// dbPort is the database port app-1's workloads connect to.
const dbPort = 5432

// startTraffic runs `demo traffic` detached from a copy of this binary
// (go run removes its own when `demo up` ends; the generator starts the
// workloads' processes from it); `demo down` stops it.
func startTraffic(stdout io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin := filepath.Join(baseDir, "bin", "demo")
	if err := copyFile(self, bin); err != nil {
		return fmt.Errorf("copy the demo binary: %w", err)
	}
	cmd := exec.Command(bin, "traffic")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	log, err := os.Create(filepath.Join(baseDir, "traffic.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start traffic generator: %w", err)
	}
	if err := os.WriteFile(trafficPID, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "traffic generator running (pid %d): allowed web->app tcp/8080 and app-1/api -> db-1 tcp/%d;\n"+
		"  denied, refused by the sender: app-1/cron -> db-1 tcp/%d, web-1 -> db-1 tcp/5432, app-1 -> web-1 tcp/8080, db-1 -> web-1 tcp/22, web-2 -> web-1 tcp/5432\n",
		cmd.Process.Pid, dbPort, dbPort)
	return cmd.Process.Release()
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// stopTraffic ends a running generator; nothing running is fine.
func stopTraffic() {
	b, err := os.ReadFile(trafficPID)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(string(b)); err == nil {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	_ = os.Remove(trafficPID)
}

// traffic is the generator's main loop: echo listeners on the targets,
// the workloads' processes, and a dial to every flow once a second, until
// SIGTERM.
func traffic() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	addr := map[string]string{}
	for _, n := range demoNodes {
		st, err := api.NewClient(filepath.Join(baseDir, n.name, "segmesh.sock")).Status(ctx)
		if err != nil {
			return err
		}
		addr[n.name] = st.Self.Address
	}
	targets := append([]flow{{appNode, "db-1", dbPort}}, demoTraffic...)
	for _, f := range targets {
		a := net.JoinHostPort(addr[f.to], strconv.Itoa(f.port))
		var ln net.Listener
		if err := inNetns(prefix+"-"+f.to, func() (err error) { ln, err = net.Listen("tcp", a); return err }); err != nil {
			continue // already listening for another flow
		}
		go echo(ln)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	workers, err := startWorkers(self, net.JoinHostPort(addr["db-1"], strconv.Itoa(dbPort)))
	defer stopWorkers(workers)
	if err != nil {
		return err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		for _, f := range demoTraffic {
			a := net.JoinHostPort(addr[f.to], strconv.Itoa(f.port))
			go func() {
				_ = inNetns(prefix+"-"+f.from, func() error {
					c, err := net.DialTimeout("tcp", a, 800*time.Millisecond)
					if err == nil {
						_, _ = c.Write(make([]byte, 16<<10))
						c.Close()
					}
					return nil
				})
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func echo(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}
