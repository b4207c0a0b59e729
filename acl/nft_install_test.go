package acl

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden renders a batch with its description and its exact bytes.
func golden(msgs []netlink.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		for _, d := range describeMsg(m) {
			fmt.Fprintf(&b, "# %s\n", d)
		}
		fmt.Fprintf(&b, "type %#04x flags %#04x\n", uint16(m.Header.Type), uint16(m.Header.Flags))
		for c := range slices.Chunk(m.Data, 16) {
			fmt.Fprintf(&b, "%x\n", c)
		}
	}
	return b.String()
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < min(len(gl), len(wl)); i++ {
			if gl[i] != wl[i] {
				t.Fatalf("%s differs at line %d:\ngot:  %s\nwant: %s", path, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("%s differs in length: %d lines, want %d", path, len(gl), len(wl))
	}
}

// installWant is the content of the Install batch for testConfig.
var installWant = func() []string {
	shards := func(format string) []string {
		var out []string
		for f, fam := range []string{"4", "6"} {
			for i := range rangeShards {
				key := fmt.Sprintf("0.0.0.%d", i)
				if f == 1 {
					key = netip.AddrFrom16([16]byte{15: byte(i)}).String()
				}
				out = append(out, strings.NewReplacer("FAM", fam, "NN", fmt.Sprintf("%03d", i), "KEY", key).Replace(format))
			}
		}
		return out
	}
	allowRule := func(fam string) string {
		if fam == "4" {
			return "add rule segmesh CHAIN: meta load nfproto => reg 1; cmp eq reg 1 02; payload load 4b @ network header + 12 => reg 1; meta load l4proto => reg 9; payload load 2b @ transport header + 2 => reg 10; lookup reg 1 set SET; accept"
		}
		return "add rule segmesh CHAIN: meta load nfproto => reg 1; cmp eq reg 1 0a; payload load 16b @ network header + 8 => reg 1; meta load l4proto => reg 2; payload load 2b @ transport header + 2 => reg 13; lookup reg 1 set SET; accept"
	}
	var out []string
	out = append(out,
		"add table inet segmesh",
		"add chain segmesh prerouting { type filter hook 0 priority -150; policy 1; }",
		"add chain segmesh mesh_in")
	out = append(out, shards("add chain segmesh rangesFAM_NN")...)
	out = append(out,
		"add object segmesh final type 1",
		"add set segmesh local4 { keytype 0x7 keylen 4 flags 0x0 }",
		"add set segmesh local6 { keytype 0x8 keylen 16 flags 0x0 }",
		"add set segmesh allow4 { keytype 0x730d keylen 12 flags 0x80 size 131072 }",
		"add set segmesh allow6 { keytype 0x830d keylen 24 flags 0x80 size 131072 }")
	for _, l := range shards("add set segmesh allowFAMr_NN { keytype 0xFAM30d keylen LEN flags 0x84 }") {
		out = append(out, strings.NewReplacer("0x430d keylen LEN", "0x730d keylen 12", "0x630d keylen LEN", "0x830d keylen 24").Replace(l))
	}
	out = append(out,
		"add set segmesh icmp4 { keytype 0x7 keylen 4 flags 0x0 size 32768 }",
		"add set segmesh icmp6 { keytype 0x8 keylen 16 flags 0x0 size 32768 }",
		"add set segmesh any4 { keytype 0x7 keylen 4 flags 0x0 size 32768 }",
		"add set segmesh any6 { keytype 0x8 keylen 16 flags 0x0 size 32768 }",
		"add set segmesh seen4 { keytype 0x7 keylen 4 flags 0x30 timeout 600000ms size 65535 expr counter }",
		"add set segmesh seen6 { keytype 0x8 keylen 16 flags 0x30 timeout 600000ms size 65535 expr counter }")
	maps := shards("add element rangesFAM { KEY : jump rangesFAM_NN }")
	out = append(out, "add set segmesh ranges4 { keytype 0x7 keylen 4 flags 0xa size 128 datatype 0xffffff00 }")
	out = append(out, maps[:rangeShards]...)
	out = append(out, "add set segmesh ranges6 { keytype 0x8 keylen 16 flags 0xa size 128 datatype 0xffffff00 }")
	out = append(out, maps[rangeShards:]...)
	out = append(out,
		"add rule segmesh prerouting: meta load iifname => reg 1; cmp eq reg 1 736d6573683000000000000000000000; ct load direction => reg 1; cmp eq reg 1 01; accept",
		"add rule segmesh prerouting: meta load iifname => reg 1; cmp eq reg 1 736d6573683000000000000000000000; ct load state => reg 1; bitwise reg 1 = (reg 1 & 04000000) ^ 00000000; cmp neq reg 1 00000000; accept",
		"add rule segmesh prerouting: meta load iifname => reg 1; cmp eq reg 1 736d6573683000000000000000000000; jump mesh_in",
		"add rule segmesh prerouting: meta load iifname => reg 1; cmp neq reg 1 6c6f0000000000000000000000000000; ct load direction => reg 1; cmp eq reg 1 01; ct load status => reg 1; bitwise reg 1 = (reg 1 & 20000000) ^ 00000000; cmp neq reg 1 00000000; accept",
		"add rule segmesh prerouting: meta load iifname => reg 1; cmp neq reg 1 6c6f0000000000000000000000000000; meta load nfproto => reg 1; cmp eq reg 1 02; payload load 4b @ network header + 12 => reg 1; bitwise reg 1 = (reg 1 & ffff0000) ^ 00000000; cmp eq reg 1 64500000; drop",
		"add rule segmesh prerouting: meta load iifname => reg 1; cmp neq reg 1 6c6f0000000000000000000000000000; meta load nfproto => reg 1; cmp eq reg 1 02; payload load 4b @ network header + 16 => reg 1; bitwise reg 1 = (reg 1 & ffff0000) ^ 00000000; cmp eq reg 1 64500000; drop",
		"add rule segmesh prerouting: meta load iifname => reg 1; cmp neq reg 1 6c6f0000000000000000000000000000; meta load nfproto => reg 1; cmp eq reg 1 0a; payload load 16b @ network header + 8 => reg 1; bitwise reg 1 = (reg 1 & ffffffffffff00000000000000000000) ^ 00000000000000000000000000000000; cmp eq reg 1 fd5e6d00000000000000000000000000; drop",
		"add rule segmesh prerouting: meta load iifname => reg 1; cmp neq reg 1 6c6f0000000000000000000000000000; meta load nfproto => reg 1; cmp eq reg 1 0a; payload load 16b @ network header + 24 => reg 1; bitwise reg 1 = (reg 1 & ffffffffffff00000000000000000000) ^ 00000000000000000000000000000000; cmp eq reg 1 fd5e6d00000000000000000000000000; drop",
		"add rule segmesh mesh_in: meta load nfproto => reg 1; cmp eq reg 1 02; payload load 4b @ network header + 16 => reg 1; lookup reg 1 set local4 invert; counter; drop",
		strings.NewReplacer("CHAIN", "mesh_in", "SET", "allow4").Replace(allowRule("4")),
		"add rule segmesh mesh_in: meta load nfproto => reg 1; cmp eq reg 1 02; payload load 4b @ network header + 12 => reg 1; bitwise reg 1 = (reg 1 & 0000007f) ^ 00000000; lookup reg 1 set ranges4 dreg 0",
		"add rule segmesh mesh_in: meta load nfproto => reg 1; cmp eq reg 1 02; payload load 4b @ network header + 12 => reg 1; lookup reg 1 set icmp4; meta load l4proto => reg 1; cmp eq reg 1 01; payload load 1b @ transport header + 0 => reg 1; cmp eq reg 1 08; accept",
		"add rule segmesh mesh_in: meta load nfproto => reg 1; cmp eq reg 1 02; payload load 4b @ network header + 12 => reg 1; lookup reg 1 set any4; accept",
		"add rule segmesh mesh_in: meta load nfproto => reg 1; cmp eq reg 1 0a; payload load 16b @ network header + 24 => reg 1; lookup reg 1 set local6 invert; counter; drop",
		strings.NewReplacer("CHAIN", "mesh_in", "SET", "allow6").Replace(allowRule("6")),
		"add rule segmesh mesh_in: meta load nfproto => reg 1; cmp eq reg 1 0a; payload load 16b @ network header + 8 => reg 1; bitwise reg 1 = (reg 1 & 0000000000000000000000000000007f) ^ 00000000000000000000000000000000; lookup reg 1 set ranges6 dreg 0",
		"add rule segmesh mesh_in: meta load nfproto => reg 1; cmp eq reg 1 0a; payload load 16b @ network header + 8 => reg 1; lookup reg 1 set icmp6; meta load l4proto => reg 1; cmp eq reg 1 3a; payload load 1b @ transport header + 0 => reg 1; cmp eq reg 1 80; accept",
		"add rule segmesh mesh_in: meta load nfproto => reg 1; cmp eq reg 1 0a; payload load 16b @ network header + 8 => reg 1; lookup reg 1 set any6; accept",
		"add rule segmesh mesh_in: limit rate 100/1s burst 100 type 0; log group 8476 snaplen 128",
		"add rule segmesh mesh_in: meta load nfproto => reg 1; cmp eq reg 1 02; payload load 4b @ network header + 12 => reg 1; dynset op 1 reg 1 set seen4 timeout 0s exprs [counter]",
		"add rule segmesh mesh_in: meta load nfproto => reg 1; cmp eq reg 1 0a; payload load 16b @ network header + 8 => reg 1; dynset op 1 reg 1 set seen6 timeout 0s exprs [counter]",
		"add rule segmesh mesh_in: objref type 1 name final; drop")
	for f, fam := range []string{"4", "6"} {
		for i := range rangeShards {
			out = append(out, strings.NewReplacer("CHAIN", shardChains[f][i], "SET", shardNames[f][i]).Replace(allowRule(fam)))
		}
	}
	return out
}()

// goldenInstall keeps the messages of the Install batch that the golden
// file holds: all but those of the shards between the first and the last
// (made by the same code as those two, which it keeps).
func goldenInstall(msgs []netlink.Message) []netlink.Message {
	var out []netlink.Message
	for _, m := range msgs {
		d := describeMsg(m)[0]
		skip := false
		for i := 1; i < rangeShards-1; i++ {
			for _, name := range []string{shardNames[0][i], shardNames[1][i], shardChains[0][i], shardChains[1][i]} {
				skip = skip || strings.Contains(d, " "+name+" ") || strings.HasSuffix(d, " "+name) || strings.Contains(d, " "+name+":")
			}
		}
		if !skip {
			out = append(out, m)
		}
	}
	return out
}

func TestInstallBatch(t *testing.T) {
	k := newFakeKernel(t)
	f := k.firewall(testConfig())
	if err := f.Install(); err != nil {
		t.Fatal(err)
	}
	if k.batchCount() != 1 {
		t.Fatalf("Install sent %d batches, want 1", k.batchCount())
	}
	b := k.batch(0)
	wantLines(t, "Install batch", describeBatch(b), installWant)
	checkGolden(t, "install.golden", golden(goldenInstall(b)))
	// The final rule is the last of mesh_in, followed by the one rule of
	// each shard chain; its echoed handle is kept.
	tb := k.table(unix.NFPROTO_INET, TableName)
	var meshIn []uint64
	for _, r := range tb.rules {
		if r.chain == chainMeshIn {
			meshIn = append(meshIn, r.handle)
		}
	}
	if f.lay.finalHandle == 0 || len(meshIn) != 14 || f.lay.finalHandle != meshIn[13] {
		t.Errorf("final rule handle %d, mesh_in's rules %v", f.lay.finalHandle, meshIn)
	}
}

// TestInstallBatchStructure decodes what Install created through the
// library's own parsers, independently of the golden bytes.
func TestInstallBatchStructure(t *testing.T) {
	k := newFakeKernel(t)
	installed(t, k)
	c := k.conn()
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) != 2+2*rangeShards {
		t.Fatalf("%d chains", len(chains))
	}
	pre := chains[0]
	if pre.Name != "prerouting" || pre.Type != nftables.ChainTypeFilter || *pre.Hooknum != *nftables.ChainHookPrerouting ||
		*pre.Priority != -150 || *pre.Policy != nftables.ChainPolicyAccept {
		t.Errorf("prerouting chain %+v", pre)
	}
	for i, c := range chains[1:] {
		want := chainMeshIn
		if i > 0 {
			want = shardChains[(i-1)/rangeShards][(i-1)%rangeShards]
		}
		if c.Name != want || c.Hooknum != nil {
			t.Errorf("chain %d: %+v, want regular chain %s", i+1, c, want)
		}
	}
	sets, err := c.GetSets(table)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range sets {
		got[s.Name] = fmt.Sprintf("%s/%d interval=%v concat=%v", s.KeyType.Name, s.KeyType.Bytes, s.Interval, s.Concatenation)
		if s.Dynamic || s.HasTimeout || s.Size != 0 {
			got[s.Name] += fmt.Sprintf(" dynamic=%v timeout=%v size=%d", s.Dynamic, s.Timeout, s.Size)
		}
		if s.IsMap || s.Constant {
			got[s.Name] += fmt.Sprintf(" map=%v constant=%v data=%s", s.IsMap, s.Constant, s.DataType.Name)
		}
	}
	want := map[string]string{
		"local4": "ipv4_addr/4 interval=false concat=false", "local6": "ipv6_addr/16 interval=false concat=false",
		"icmp4":   "ipv4_addr/4 interval=false concat=false dynamic=false timeout=0s size=32768",
		"icmp6":   "ipv6_addr/16 interval=false concat=false dynamic=false timeout=0s size=32768",
		"any4":    "ipv4_addr/4 interval=false concat=false dynamic=false timeout=0s size=32768",
		"any6":    "ipv6_addr/16 interval=false concat=false dynamic=false timeout=0s size=32768",
		"allow4":  "ipv4_addr . inet_proto . inet_service/12 interval=false concat=true dynamic=false timeout=0s size=131072",
		"allow6":  "ipv6_addr . inet_proto . inet_service/24 interval=false concat=true dynamic=false timeout=0s size=131072",
		"seen4":   "ipv4_addr/4 interval=false concat=false dynamic=true timeout=10m0s size=65535",
		"seen6":   "ipv6_addr/16 interval=false concat=false dynamic=true timeout=10m0s size=65535",
		"ranges4": "ipv4_addr/4 interval=false concat=false dynamic=false timeout=0s size=128 map=true constant=true data=verdict",
		"ranges6": "ipv6_addr/16 interval=false concat=false dynamic=false timeout=0s size=128 map=true constant=true data=verdict",
	}
	for i := range rangeShards {
		want[shardNames[0][i]] = "ipv4_addr . inet_proto . inet_service/12 interval=true concat=true"
		want[shardNames[1][i]] = "ipv6_addr . inet_proto . inet_service/24 interval=true concat=true"
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sets:\n got %v\nwant %v", got, want)
	}
	for _, chain := range chains {
		rules, err := c.GetRules(table, chain)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{"prerouting": 8, "mesh_in": 14}[chain.Name]
		if n == 0 {
			n = 1 // a shard chain
		}
		if len(rules) != n {
			t.Errorf("chain %s: %d rules, want %d", chain.Name, len(rules), n)
		}
	}
	// The shard maps jump to the shard chains.
	for _, name := range []string{mapRanges4, mapRanges6} {
		elems, err := c.GetSetElements(&nftables.Set{Table: table, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if why := compareShardMap(name, elems); why != "" || len(elems) != rangeShards {
			t.Errorf("map %s: %d elements: %s", name, len(elems), why)
		}
	}
}

func TestInstallKeepsOwnTable(t *testing.T) {
	for _, audit := range []bool{false, true} {
		t.Run(fmt.Sprintf("audit=%v", audit), func(t *testing.T) {
			k := newFakeKernel(t)
			prev := installed(t, k) // the run that crashed
			d := baseDesired()
			d.Audit = audit
			if err := prev.Apply(d); err != nil {
				t.Fatal(err)
			}
			h := prev.lay.finalHandle

			f := k.firewall(testConfig())
			got := newBatch(t, k, f.Install)
			var want []string
			if audit { // fail closed: back to enforce mode, elements kept
				want = []string{fmt.Sprintf("replace rule handle %d segmesh mesh_in: objref type 1 name final; drop", h)}
			}
			wantLines(t, "Install over our own table", got, want)
			wantLines(t, "kept allow4", k.elements("allow4"), []string{"100.80.0.3 . 17 . 53"})
			wantLines(t, "kept allow4r", k.elements("allow4r"), []string{"100.80.0.3 . 6 . 80-90"})
			// The first Apply diffs against what the kernel holds.
			got = newBatch(t, k, func() error { return f.Apply(withPeerB(baseDesired())) })
			wantLines(t, "first Apply after keeping", got, []string{
				"add element allow4 { 100.80.0.4 . 6 . 5432 }",
				"add element allow6 { fd5e:6d00::4 . 6 . 5432 }",
				"add element any4 { 100.80.0.4 }",
				"add element any6 { fd5e:6d00::4 }",
			})
		})
	}
}

func TestInstallRecreatesForeignLayout(t *testing.T) {
	for name, setup := range map[string]func(t *testing.T, k *fakeKernel){
		"other interface": func(t *testing.T, k *fakeKernel) {
			cfg := testConfig()
			cfg.Interface = "old0"
			if err := k.firewall(cfg).Install(); err != nil {
				t.Fatal(err)
			}
		},
		"extra chain": func(t *testing.T, k *fakeKernel) {
			installed(t, k)
			c := k.conn()
			c.AddChain(&nftables.Chain{Name: "extra", Table: &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}})
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
		},
		"extra rule": func(t *testing.T, k *fakeKernel) {
			f := installed(t, k)
			c := k.conn()
			c.AddRule(&nftables.Rule{Table: f.lay.table, Chain: f.lay.prerouting, Exprs: []expr.Any{accept()}})
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
		},
		"empty table": func(t *testing.T, k *fakeKernel) {
			c := k.conn()
			c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName})
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			k := newFakeKernel(t)
			setup(t, k)
			got := newBatch(t, k, k.firewall(testConfig()).Install)
			wantLines(t, "recreate", got, append([]string{"delete table inet segmesh"}, installWant...))
		})
	}
}

func TestNeverTouchesOtherTables(t *testing.T) {
	k := newFakeKernel(t)
	host := &nftables.Table{Family: nftables.TableFamilyINet, Name: "hostfw"}
	c := k.conn()
	c.AddTable(host)
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: host, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: host, Chain: ch, Exprs: []expr.Any{&expr.Counter{}, accept()}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	hostBefore := fmt.Sprint(*k.table(unix.NFPROTO_INET, "hostfw"))

	f := installed(t, k)
	audit := withPeerB(baseDesired())
	audit.Audit = true
	for _, step := range []func() error{
		func() error { return f.Apply(baseDesired()) },
		func() error { return f.Apply(audit) },
		f.Install, f.Remove, f.Remove, f.Install,
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < k.batchCount(); i++ {
		for _, m := range k.batch(i) {
			as := parseAttrs(m.Data[4:])
			if table := attrStr(as, 1); table != TableName { // attribute 1 is the table name in every message we send
				t.Errorf("batch %d touches table %q: %v", i, table, describeMsg(m))
			}
		}
	}
	if after := k.table(unix.NFPROTO_INET, "hostfw"); after == nil || fmt.Sprint(*after) != hostBefore {
		t.Errorf("table inet hostfw changed")
	}
}

func TestRemoveIsIdempotent(t *testing.T) {
	k := newFakeKernel(t)
	f := installed(t, k)
	got := newBatch(t, k, f.Remove)
	wantLines(t, "Remove", got, []string{"delete table inet segmesh"})
	if got := newBatch(t, k, f.Remove); got != nil {
		t.Errorf("second Remove sent %v", got)
	}
	if err := f.Apply(baseDesired()); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("Apply after Remove: %v", err)
	}
}

func TestCountersReadsFinalCounter(t *testing.T) {
	k := newFakeKernel(t)
	f := installed(t, k)
	p, b, err := f.Counters()
	if err != nil || p != 0 || b != 0 {
		t.Fatalf("Counters() = %d, %d, %v", p, b, err)
	}
}

func TestNewFirewallValidatesConfig(t *testing.T) {
	k := newFakeKernel(t)
	for name, mut := range map[string]func(*Config){
		"no interface":   func(c *Config) { c.Interface = "" },
		"long interface": func(c *Config) { c.Interface = "a234567890123456" },
		"no network4":    func(c *Config) { c.Network4 = netip.Prefix{} },
		"v6 network4":    func(c *Config) { c.Network4 = c.Network6 },
		"v4 network6":    func(c *Config) { c.Network6 = c.Network4 },
	} {
		cfg := testConfig()
		mut(&cfg)
		if _, err := NewFirewall(cfg, nil, nftables.WithTestDial(k.dial)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
