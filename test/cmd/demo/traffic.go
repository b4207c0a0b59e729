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

// demoTraffic: allowed flows between segments and denied flows into web-1,
// so every view of `segmesh top --socket web-1` has something to show.
var demoTraffic = []flow{
	{"web-1", "app-1", 8080}, {"web-2", "app-1", 8080}, {"app-1", "db-1", 5432}, // allowed
	{"app-1", "web-1", 8080}, {"db-1", "web-1", 22}, {"web-2", "web-1", 5432}, // denied into web-1
}

// startTraffic runs `demo traffic` detached; `demo down` stops it.
func startTraffic(stdout io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "traffic")
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
	fmt.Fprintf(stdout, "traffic generator running (pid %d): allowed web->app:8080, app->db:5432; denied into web-1\n", cmd.Process.Pid)
	return cmd.Process.Release()
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

// traffic is the generator's main loop: echo listeners on the allowed
// targets, and a dial to every flow once a second, until SIGTERM.
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
	for _, f := range demoTraffic {
		a := net.JoinHostPort(addr[f.to], strconv.Itoa(f.port))
		var ln net.Listener
		if err := inNetns(prefix+"-"+f.to, func() (err error) { ln, err = net.Listen("tcp", a); return err }); err != nil {
			continue // already listening for another flow
		}
		go echo(ln)
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
