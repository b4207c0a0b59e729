package nft

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
)

// oldLayoutElements is how many set elements the previous release's layout
// (per source `saddr . l4proto . dport`, icmp and any sets) holds for e.
func oldLayoutElements(e acl.Enforced) int {
	per := map[uint32]int{}
	for _, id := range e.Identities {
		switch {
		case id.Any:
			per[id.ID] = 1
		default:
			per[id.ID] = len(id.TCP) + len(id.UDP)
			if id.ICMP {
				per[id.ID]++
			}
		}
	}
	n := len(e.Local)
	for _, s := range e.Sources {
		n += per[s.ID]
	}
	return n
}

// oldLayoutScript returns an nft script that loads the previous release's
// table (testdata/old_table.nft, its set elements left out) holding e as
// that release stored it: per source its single ports in allow4/allow6
// (`saddr . proto . port`), its ranges in the interval set of its shard
// (allow4r_NNN by the address's last 7 bits), icmp4/icmp6 and any4/any6.
func oldLayoutScript(tb testing.TB, e acl.Enforced) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "old_table.nft"))
	if err != nil {
		tb.Fatal(err)
	}
	blocks := strings.Split(string(b), "\n\n")
	for i, bl := range blocks {
		if strings.HasPrefix(strings.TrimSpace(bl), "set ") {
			blocks[i] = regexp.MustCompile(`(?s)\n\s*elements = \{[^}]*\}`).ReplaceAllString(bl, "")
		}
	}
	var out strings.Builder
	out.WriteString(strings.Join(blocks, "\n\n") + "\n")
	ids := map[uint32]acl.Identity{}
	for _, id := range e.Identities {
		ids[id.ID] = id
	}
	byName := map[string][]string{}
	for _, a := range e.Local {
		byName["local"+famDigit(a)] = append(byName["local"+famDigit(a)], a.String())
	}
	for _, src := range e.Sources {
		id, f := ids[src.ID], famDigit(src.Addr)
		switch {
		case id.Any:
			byName["any"+f] = append(byName["any"+f], src.Addr.String())
			continue
		case id.ICMP:
			byName["icmp"+f] = append(byName["icmp"+f], src.Addr.String())
		}
		shard := fmt.Sprintf("allow%sr_%03d", f, src.Addr.As16()[15]&127)
		for _, p := range []struct {
			name string
			rs   []acl.PortRange
		}{{"tcp", id.TCP}, {"udp", id.UDP}} {
			for _, r := range p.rs {
				if r.Lo == r.Hi {
					byName["allow"+f] = append(byName["allow"+f], fmt.Sprintf("%s . %s . %d", src.Addr, p.name, r.Lo))
				} else {
					byName[shard] = append(byName[shard], fmt.Sprintf("%s . %s . %d-%d", src.Addr, p.name, r.Lo, r.Hi))
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		els := byName[name]
		for i := 0; i < len(els); i += 5000 {
			fmt.Fprintf(&out, "add element inet segmesh %s { %s }\n", name, strings.Join(els[i:min(i+5000, len(els))], ", "))
		}
	}
	return out.String()
}

func famDigit(a netip.Addr) string {
	if a.Is4() {
		return "4"
	}
	return "6"
}

// kernelMemory is the kernel's slab and vmalloc use in KiB (/proc/meminfo),
// read when it has not changed by more than 64 KiB over 100 ms (a set's
// hash table grows in a worker after the batch) or after 2 s.
func kernelMemory(tb testing.TB) int64 {
	tb.Helper()
	read := func() int64 {
		b, err := os.ReadFile("/proc/meminfo")
		if err != nil {
			tb.Fatal(err)
		}
		var n int64
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && (f[0] == "Slab:" || f[0] == "VmallocUsed:") {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				n += v
			}
		}
		return n
	}
	last := read()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond) // the kernel's deferred work has no event to wait for
		v := read()
		if d := v - last; d < 64 && d > -64 {
			return v
		}
		last = v
	}
	return last
}

// tableElements counts the elements of table inet segmesh as nft lists
// them (sets and maps).
func tableElements(t testing.TB, ns *testNS) int {
	o := listJSON(t, ns, "table", "inet", "segmesh")
	n := 0
	for _, c := range o.elems {
		n += c
	}
	return n
}

// TestRootElementCount10000 is row 7i's acceptance: at 10,000 peers × 20
// ports the table holds at least 10 times fewer elements than the
// previous layout did.
func TestRootElementCount10000(t *testing.T) {
	ns, f := installedFirewall(t)
	e := meshState(10000, 5)
	if err := f.Apply(e); err != nil {
		t.Fatal(err)
	}
	got, old := tableElements(t, ns), oldLayoutElements(e)
	t.Logf("elements: %d (old layout: %d, %.1fx fewer)", got, old, float64(old)/float64(got))
	if got != 2*10000+5*20+2 {
		t.Errorf("%d elements, want %d", got, 2*10000+5*20+2)
	}
	if got*10 > old {
		t.Errorf("%d elements, old layout %d: fewer than 10x less", got, old)
	}
}

// BenchmarkTableElements10000 reports row 7i's figures: the elements of
// the table at 10,000 peers × 20 ports, and those of the old layout.
func BenchmarkTableElements10000(b *testing.B) {
	ns, f := installedFirewall(b)
	e := meshState(10000, 5)
	if err := f.Apply(e); err != nil {
		b.Fatal(err)
	}
	got, old := tableElements(b, ns), oldLayoutElements(e)
	// Kernel memory: the growth of slab + vmalloc from an empty table to
	// this one, and to the previous release's table with the same content
	// (loaded with nft in another namespace).
	if err := f.Remove(); err != nil {
		b.Fatal(err)
	}
	base := kernelMemory(b)
	if err := f.Install(); err != nil {
		b.Fatal(err)
	}
	if err := f.Apply(e); err != nil {
		b.Fatal(err)
	}
	mem := kernelMemory(b) - base
	if err := f.Remove(); err != nil {
		b.Fatal(err)
	}
	ns2 := newTestNS(b)
	script := filepath.Join(b.TempDir(), "old.nft")
	if err := os.WriteFile(script, []byte(oldLayoutScript(b, e)), 0o600); err != nil {
		b.Fatal(err)
	}
	base = kernelMemory(b)
	ns2.Run("nft", "-f", script)
	oldMem := kernelMemory(b) - base
	if n := strings.Count(ns2.Run("nft", "list", "set", "inet", "segmesh", "allow4"), " . tcp . "); n < 10000 {
		b.Fatalf("old layout: allow4 holds %d tcp elements", n)
	}
	for range b.N {
	}
	b.ReportMetric(float64(got), "elements")
	b.ReportMetric(float64(old), "old-elements")
	b.ReportMetric(float64(old)/float64(got), "ratio")
	b.ReportMetric(float64(mem), "kernel-KiB")
	b.ReportMetric(float64(oldMem), "old-kernel-KiB")
}
