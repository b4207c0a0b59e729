package acl

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
)

// BenchmarkApplyFirst10000NftTool is BenchmarkApplyFirst10000/kernel done
// by the nft tool instead of Apply: the same 200,000 elements (port ranges
// into the shard sets allow4r_N/allow6r_N, ICMP sources into icmp4/icmp6) as
// one `nft -f` script (one transaction) into a freshly installed table. It
// is the kernel's floor for that change: what the command-line tool of
// nftables itself needs. ns/op includes starting nft (its ms/op "startup"
// is an empty script's); kernel-ms/op is the system CPU time of the nft
// process: the kernel's work on the transaction, which runs in the sender's
// context.
func BenchmarkApplyFirst10000NftTool(b *testing.B) {
	requireRoot(b)
	if _, err := exec.LookPath("nft"); err != nil {
		b.Skip("nft not installed")
	}
	ns := newTestNS(b)
	d := benchDesired(10000)
	script := filepath.Join(b.TempDir(), "elements.nft")
	if err := os.WriteFile(script, []byte(nftElementScript(d)), 0o600); err != nil {
		b.Fatal(err)
	}
	empty := filepath.Join(b.TempDir(), "empty.nft")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	f, err := NewFirewall(testConfig(), nil, nftables.WithNetNSFd(int(ns.Handle)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	var startup, sys time.Duration
	for b.Loop() {
		b.StopTimer()
		if err := f.Remove(); err != nil {
			b.Fatal(err)
		}
		if err := f.Install(); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		ns.Run("nft", "-f", empty)
		startup += time.Since(t0)
		b.StartTimer()
		cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", script)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("nft -f: %v: %s", err, out)
		}
		sys += cmd.ProcessState.SystemTime()
	}
	b.ReportMetric(float64(startup.Milliseconds())/float64(b.N), "ms-startup/op")
	b.ReportMetric(float64(sys.Milliseconds())/float64(b.N), "kernel-ms/op")
	b.ReportMetric(float64(len(d.Ports)+len(d.ICMP)), "elements")
}

// nftElementScript writes d's port ranges and ICMP sources as `add element`
// commands for the sets Apply would put them in.
func nftElementScript(d Desired) string {
	var sb strings.Builder
	shards := map[string][]string{}
	for _, p := range d.Ports {
		fam, last := "4", p.Src.As16()[15]
		if p.Src.Is6() {
			fam = "6"
		}
		set := fmt.Sprintf("allow%sr_%03d", fam, int(last)%rangeShards)
		shards[set] = append(shards[set], fmt.Sprintf("%s . tcp . %d-%d", p.Src, p.PortLo, p.PortHi))
	}
	for _, a := range d.ICMP {
		set := "icmp4"
		if a.Is6() {
			set = "icmp6"
		}
		shards[set] = append(shards[set], a.String())
	}
	for set, els := range shards {
		fmt.Fprintf(&sb, "add element inet segmesh %s { %s }\n", set, strings.Join(els, ", "))
	}
	return sb.String()
}
