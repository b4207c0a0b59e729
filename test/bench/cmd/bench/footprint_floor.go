package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// wireguardFloor measures what the userspace WireGuard device of row 8a
// costs by itself: it stops the daemon d and runs standalone upstream
// wireguard-go in d's namespace with d's WireGuard configuration (`wg
// showconf`: its private key, listen port and every peer with its endpoint
// and keepalive), waits until the simulated peers have completed a handshake
// with it again (bounded by prm.JoinWait), and returns its memory as 8a
// measures the daemon's (median and highest over prm.CPUWindow) and the
// number of peers that did. ifname must be free in d's namespace.
func wireguardFloor(env *Env, prm Params, d *harness.Node, ifname string, procs *[]*harness.Proc) (med, high memKB, seen int, err error) {
	conf, err := d.Exec("wg", "showconf", d.Interface)
	if err != nil {
		return med, high, 0, fmt.Errorf("wg showconf: %w", err)
	}
	path := filepath.Join(d.Dir, "floor.conf")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		return med, high, 0, err
	}
	if err := d.Stop(); err != nil {
		return med, high, 0, fmt.Errorf("stop daemon: %w", err)
	}
	p, err := startWireGuardGo(env, d, ifname, "wireguard-go-floor.log", procs)
	if err != nil {
		return med, high, 0, err
	}
	if err := waitWireGuardGo(ifname); err != nil {
		return med, high, 0, err
	}
	// Up first: wireguard-go starts a peer's handshake when its keepalive is
	// set on a running device.
	for _, argv := range [][]string{{"ip", "link", "set", ifname, "up"}, {"wg", "setconf", ifname, path}} {
		if _, err := d.Exec(argv...); err != nil {
			return med, high, 0, err
		}
	}
	start := time.Now()
	want := 0
	err = harness.WaitFor(prm.JoinWait, func() error {
		dev, err := d.WireGuardDevice(ifname)
		if err != nil {
			return err
		}
		seen, want = 0, len(dev.Peers)
		for _, peer := range dev.Peers {
			if !peer.LatestHandshake.Before(start.Truncate(time.Second)) {
				seen++
			}
		}
		if seen < want {
			return fmt.Errorf("%d/%d peers completed a handshake with wireguard-go", seen, want)
		}
		return nil
	})
	if err != nil {
		logf("footprint: %v; measuring anyway", err)
	}
	time.Sleep(3 * time.Second) // as for the daemon: settle the handshake burst
	med, high, err = rssOver(p.PID(), prm.CPUWindow)
	return med, high, seen, err
}

// startWireGuardGo starts upstream wireguard-go in the foreground in n's
// namespace on interface ifname, logging to logName in n's directory, and
// adds it to procs (stopped with the rest at the end of its group).
func startWireGuardGo(env *Env, n *harness.Node, ifname, logName string, procs *[]*harness.Proc) (*harness.Proc, error) {
	p, err := harness.Spawn(n.Namespace, filepath.Join(n.Dir, logName), "env", "WG_PROCESS_FOREGROUND=1", env.WGGo, "-f", ifname)
	if err != nil {
		return nil, err
	}
	*procs = append(*procs, p)
	return p, nil
}

// waitWireGuardGo waits until the wireguard-go instances of ifnames have
// created their UAPI sockets (then wg can configure them).
func waitWireGuardGo(ifnames ...string) error {
	err := harness.WaitFor(10*time.Second, func() error {
		for _, ifn := range ifnames {
			if _, err := os.Stat(filepath.Join(harness.WireGuardSocketDir, ifn+".sock")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("upstream wireguard-go did not start: %w", err)
	}
	return nil
}
