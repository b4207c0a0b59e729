package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// Issue-8 data-plane rows: segmesh against standalone upstream wireguard-go,
// single TCP stream, at underlay MTU 1500 (from rows 1) and, after raising
// the underlay to 9000 and restarting the segmesh pair (mtu: auto then
// yields 8920), at MTU 9000 — against wireguard-go left at its default 1420
// and against wireguard-go set to 8920 by hand.
const (
	target1500 = 1.35
	target9000 = 1.5
	jumboMTU   = 9000
)

// row9a turns rows 1's single-stream runs into the issue-8 ratio.
func row9a(res *dataplaneResult) Row {
	ratio := res.r1
	return Row{
		ID: "9a", What: "data plane, 1 TCP stream, underlay MTU 1500, Gbit/s",
		Measured: fmt.Sprintf("segmesh %.2f (mtu auto: 1420), wireguard-go %.2f (MTU 1420)", res.sm1, res.wg1),
		Target:   fmt.Sprintf("segmesh ≥ %.2f × wireguard-go", target1500), Ratio: fmt.Sprintf("%.3f", ratio),
		Verdict: verdict(ratio >= target1500),
		Note:    "the single-stream runs of row 1a: medians, and the median of the per-run ratios.",
	}
}

// measureJumbo raises the underlay of the pair to MTU 9000, restarts the
// segmesh nodes so that mtu: auto sees it, and measures row 9b.
func measureJumbo(prm Params, p *pair) ([]Row, error) {
	for _, n := range []*harness.Node{p.a, p.b} {
		if err := p.c.SetUnderlayMTU(n, jumboMTU); err != nil {
			return nil, err
		}
	}
	for _, n := range []*harness.Node{p.a, p.b} {
		if err := n.Restart(); err != nil {
			return nil, fmt.Errorf("restart %s on the jumbo underlay: %w", n.Name, err)
		}
	}
	if _, err := harness.WaitMesh(30*time.Second, p.a, p.b); err != nil {
		return nil, fmt.Errorf("segmesh pair did not re-form at MTU %d: %w", jumboMTU, err)
	}
	if _, err := harness.PingWithin(p.a, p.smB, 20*time.Second); err != nil {
		return nil, err
	}
	smMTU, err := linkMTU(p.b, p.b.Interface)
	if err != nil {
		return nil, err
	}
	wgIf := p.c.Prefix() + "gb"
	set := func(mtu int) error {
		for n, ifn := range map[*harness.Node]string{p.a: p.c.Prefix() + "ga", p.b: wgIf} {
			if out, err := n.Exec("ip", "link", "set", ifn, "mtu", strconv.Itoa(mtu)); err != nil {
				return fmt.Errorf("set %s mtu %d: %w: %s", ifn, mtu, err, out)
			}
		}
		return nil
	}
	res := map[string][]float64{}
	kinds := []string{"segmesh", "wg1420", "wg8920"}
	for r := 0; r < prm.Runs; r++ {
		for i := range kinds {
			k := kinds[(i+r)%len(kinds)]
			addr, port := p.smB, 5202
			switch k {
			case "wg1420":
				addr, port = p.wgB, 5203
				err = set(1420)
			case "wg8920":
				addr, port = p.wgB, 5203
				err = set(jumboMTU - 80)
			}
			if err != nil {
				return nil, err
			}
			g, err := p.iperf(addr, port, 1, prm.Secs)
			if err != nil {
				return nil, err
			}
			res[k] = append(res[k], g)
		}
		logf("jumbo run %d: segmesh (MTU %d) %.2f, wireguard-go MTU 1420 %.2f, MTU 8920 %.2f Gbit/s",
			r+1, smMTU, last(res["segmesh"]), last(res["wg1420"]), last(res["wg8920"]))
	}
	sm, wgDef, wgJumbo := median(res["segmesh"]), median(res["wg1420"]), median(res["wg8920"])
	ratio, ratioJumbo := pairedRatio(res["segmesh"], res["wg1420"]), pairedRatio(res["segmesh"], res["wg8920"])
	return []Row{{
		ID: "9b", What: "data plane, 1 TCP stream, underlay MTU 9000, Gbit/s",
		Measured: fmt.Sprintf("segmesh %.2f (mtu auto: %d); wireguard-go %.2f at its default MTU 1420, %.2f at MTU 8920 (%.3f of it)",
			sm, smMTU, wgDef, wgJumbo, ratioJumbo),
		Target: fmt.Sprintf("segmesh ≥ %.1f × wireguard-go", target9000), Ratio: fmt.Sprintf("%.3f", ratio),
		Verdict: verdict(ratio >= target9000),
		Note: fmt.Sprintf("underlay links and bridge set to MTU %d, segmesh pair restarted (policy and the 10,000 extra elements as in rows 1); "+
			"ratio against wireguard-go as it comes (tun created at 1420); against the same wireguard-go with its MTU raised by hand to 8920 the ratio is %.3f. "+
			"iperf3 -t %d, %d alternated runs, medians; ratios: the median of the per-run ratios (%s against MTU 1420).", jumboMTU, ratioJumbo, prm.Secs, prm.Runs, ratioList(res["segmesh"], res["wg1420"])),
	}}, nil
}

// linkMTU reads the MTU of link name in n's namespace.
func linkMTU(n *harness.Node, name string) (int, error) {
	out, err := n.Exec("cat", "/sys/class/net/"+name+"/mtu")
	if err != nil {
		return 0, fmt.Errorf("read MTU of %s: %w: %s", name, err, out)
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

// profileRow records the tunnel processes with perf (when installed) during
// one single-stream run through each tunnel and lists the hottest symbols:
// where the CPU goes, segmesh next to upstream wireguard-go.
func profileRow(p *pair) Row {
	row := Row{ID: "9c", What: "CPU profile of the tunnel processes during 1 TCP stream (perf)", Verdict: Info}
	if _, err := exec.LookPath("perf"); err != nil {
		row.Verdict, row.Note = NotMeasured, "perf is not installed (Debian: linux-perf)."
		return row
	}
	var parts []string
	for _, k := range []struct {
		name, addr string
		port       int
		procs      []string // pgrep -f patterns of the two tunnel processes
	}{
		{"segmesh", p.smB, 5202, []string{p.a.Dir + "/", p.b.Dir + "/"}},
		{"wireguard-go", p.wgB, 5203, []string{" -f " + p.c.Prefix() + "ga$", " -f " + p.c.Prefix() + "gb$"}},
	} {
		top, err := perfTop(p, k.addr, k.port, k.procs)
		if err != nil {
			row.Verdict, row.Note = Errored, err.Error()
			return row
		}
		parts = append(parts, k.name+": "+top)
	}
	row.Measured = strings.Join(parts, " | ")
	row.Note = "perf record -p (the two tunnel processes, all threads, user and kernel) for 4 s in the middle of a 6 s iperf3 run; self time, symbols ≥ 2%, [k] kernel; same namespaces and run as rows 1."
	return row
}

// perfTop profiles the two tunnel processes (all their threads, user and
// kernel) while A sends to addr:port.
func perfTop(p *pair, addr string, port int, patterns []string) (string, error) {
	var pids []string
	for _, pat := range patterns {
		out, err := exec.Command("pgrep", "-f", "-o", "--", pat).Output()
		if err != nil {
			return "", fmt.Errorf("find tunnel process %q: %w", pat, err)
		}
		pids = append(pids, strings.TrimSpace(string(out)))
	}
	f := filepath.Join(p.b.Dir, fmt.Sprintf("perf-%d.data", port))
	done := make(chan error, 1)
	go func() { _, err := p.iperf(addr, port, 1, 6); done <- err }()
	time.Sleep(time.Second) // the profile starts once the stream is at speed
	rec := exec.Command("perf", "record", "-q", "-p", strings.Join(pids, ","), "-o", f, "--", "sleep", "4")
	recErr := rec.Run()
	if err := <-done; err != nil {
		return "", err
	}
	if recErr != nil {
		return "", fmt.Errorf("perf record: %w", recErr)
	}
	out, err := exec.Command("perf", "report", "-i", f, "--no-children", "--sort", "sym", "-q", "--percent-limit", "2").Output()
	if err != nil {
		return "", fmt.Errorf("perf report: %w", err)
	}
	var top []string
	for _, l := range strings.Split(string(out), "\n") {
		fs := strings.Fields(l)
		if len(fs) < 3 {
			continue
		}
		sym := fs[len(fs)-1]
		if i := strings.LastIndex(sym, "/"); i >= 0 {
			sym = sym[i+1:]
		}
		top = append(top, fmt.Sprintf("%s %s%s", fs[0], map[string]string{"[k]": "[k] "}[fs[1]], sym))
	}
	return strings.Join(top, ", "), nil
}
