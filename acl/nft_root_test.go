package acl

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests run the Firewall against the real kernel, in throwaway network
// namespaces (root only; see requireRoot).

// nftJSON is the part of `nft -j list ...` the tests read.
type nftJSON struct {
	Nftables []map[string]json.RawMessage `json:"nftables"`
}

type nftObjects struct {
	tables, chains, rules, sets map[string]int // per table
	prerouting                  map[string]any
	setTypes                    map[string]string // set -> type/flags
	elems                       map[string]int    // set -> element count
}

// count returns the number of elements of a logical set: for allow4r and
// allow6r, of all their shards.
func (o nftObjects) count(set string) int {
	n := 0
	for _, name := range kernelSetNames(logicalSet[set]) {
		n += o.elems[name]
	}
	return n
}

func listJSON(t *testing.T, ns *testNS, args ...string) nftObjects {
	t.Helper()
	out := ns.Run(append([]string{"nft", "-j", "list"}, args...)...)
	var doc nftJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j: %v: %s", err, out)
	}
	o := nftObjects{tables: map[string]int{}, chains: map[string]int{}, rules: map[string]int{}, sets: map[string]int{},
		setTypes: map[string]string{}, elems: map[string]int{}}
	for _, item := range doc.Nftables {
		for kind, raw := range item {
			var v map[string]any
			if err := json.Unmarshal(raw, &v); err != nil {
				continue // metainfo
			}
			table := fmt.Sprint(v["family"], " ", v["table"])
			switch kind {
			case "table":
				o.tables[fmt.Sprint(v["family"], " ", v["name"])]++
			case "chain":
				o.chains[table]++
				if v["table"] == TableName && v["name"] == "prerouting" {
					o.prerouting = v
				}
			case "rule":
				o.rules[table]++
			case "set":
				o.sets[table]++
				if v["table"] == TableName {
					o.setTypes[fmt.Sprint(v["name"])] = fmt.Sprint(v["type"], " ", v["flags"])
					if e, ok := v["elem"].([]any); ok {
						o.elems[fmt.Sprint(v["name"])] = len(e)
					}
				}
			}
		}
	}
	return o
}

func TestRootInstallLayoutAndCoexistence(t *testing.T) {
	requireRoot(t)
	ns := newTestNS(t)
	// The host's own firewall, which must stay untouched.
	ns.Run("nft", "add table inet hostfw")
	ns.Run("nft", "add chain inet hostfw input { type filter hook input priority 0; policy accept; }")
	ns.Run("nft", "add rule inet hostfw input tcp dport 22 counter accept")
	ns.Run("nft", "add set inet hostfw blocked { type ipv4_addr; elements = { 192.0.2.9 } }")
	hostfw := ns.Run("nft", "-a", "-j", "list", "table", "inet", "hostfw")

	f := ns.firewall(testConfig())
	g := ns.gen()
	if err := f.Install(); err != nil {
		t.Fatal(err)
	}
	if d := ns.gen() - g; d != 1 {
		t.Errorf("Install committed %d transactions, want 1", d)
	}
	if got := normTable(ns.Run("nft", "list", "table", "inet", "segmesh")); got != wantTable {
		t.Errorf("nft list table inet segmesh:\n%s\nwant:\n%s", got, wantTable)
	}
	o := listJSON(t, ns, "ruleset")
	// 2 + 256 shard chains, 22 + 256 rules, 10 + 256 sets (and 2 maps).
	if o.tables["inet segmesh"] != 1 || o.chains["inet segmesh"] != 258 || o.rules["inet segmesh"] != 278 || o.sets["inet segmesh"] != 266 {
		t.Errorf("layout counts: tables %v chains %v rules %v sets %v", o.tables, o.chains, o.rules, o.sets)
	}
	if p := o.prerouting; p["type"] != "filter" || p["hook"] != "prerouting" || p["prio"] != float64(-150) || p["policy"] != "accept" {
		t.Errorf("prerouting chain %v", p)
	}
	for set, want := range map[string]string{
		"local4": "ipv4_addr <nil>", "local6": "ipv6_addr <nil>", "icmp4": "ipv4_addr <nil>", "any6": "ipv6_addr <nil>",
		"allow4": "[ipv4_addr inet_proto inet_service] <nil>", "allow6": "[ipv6_addr inet_proto inet_service] <nil>",
		"allow4r_003": "[ipv4_addr inet_proto inet_service] [interval]", "allow6r_127": "[ipv6_addr inet_proto inet_service] [interval]",
	} {
		if got := o.setTypes[set]; got != want {
			t.Errorf("set %s: %s, want %s", set, got, want)
		}
	}

	// Elements and mode switch, then a restart (Install by a new Firewall)
	// over the crash-left table: kept, not duplicated, back in enforce mode.
	d := baseDesired()
	d.Audit = true
	if err := f.Apply(d); err != nil {
		t.Fatal(err)
	}
	for set, want := range map[string]string{"allow4": "100.80.0.3 . udp . 53", "allow4r_003": "100.80.0.3 . tcp . 80-90"} {
		if got := ns.Run("nft", "list", "set", "inet", "segmesh", set); !strings.Contains(got, want) {
			t.Errorf("%s lacks %q:\n%s", set, want, got)
		}
	}
	if chain := ns.Run("nft", "list", "chain", "inet", "segmesh", "mesh_in"); !strings.Contains(chain, `counter name "final" accept`) {
		t.Errorf("audit mode final rule:\n%s", chain)
	}
	handles := ns.Run("nft", "-a", "list", "chain", "inet", "segmesh", "prerouting")
	f2 := ns.firewall(testConfig())
	if err := f2.Install(); err != nil {
		t.Fatal(err)
	}
	if got := ns.Run("nft", "-a", "list", "chain", "inet", "segmesh", "prerouting"); got != handles {
		t.Errorf("kept table's rules were recreated:\n%s\nbefore:\n%s", got, handles)
	}
	o = listJSON(t, ns, "ruleset")
	if o.tables["inet segmesh"] != 1 || o.rules["inet segmesh"] != 278 || o.elems["allow4"] != 1 || o.elems["allow4r_003"] != 1 || o.elems["icmp6"] != 1 {
		t.Errorf("after Install over our table: tables %v rules %v elements %v", o.tables, o.rules, o.elems)
	}
	if chain := ns.Run("nft", "list", "chain", "inet", "segmesh", "mesh_in"); !strings.Contains(chain, `counter name "final" drop`) {
		t.Errorf("Install did not return to enforce mode:\n%s", chain)
	}
	// The first Apply of the new Firewall diffs against the kernel.
	if err := f2.Apply(withPeerB(baseDesired())); err != nil {
		t.Fatal(err)
	}
	if f2.last != (batchStats{Adds: 4}) {
		t.Errorf("first Apply after restart: %+v, want 4 additions", f2.last)
	}

	// A table that is not exactly ours is replaced in one transaction.
	ns.Run("nft", "add rule inet segmesh prerouting counter")
	ns.Run("nft", "add chain inet segmesh stray")
	g = ns.gen()
	f3 := ns.firewall(testConfig())
	if err := f3.Install(); err != nil {
		t.Fatal(err)
	}
	if d := ns.gen() - g; d != 1 {
		t.Errorf("recreating Install committed %d transactions, want 1", d)
	}
	if got := normTable(ns.Run("nft", "list", "table", "inet", "segmesh")); got != wantTable {
		t.Errorf("after recreation:\n%s", got)
	}
	if err := f3.Apply(baseDesired()); err != nil {
		t.Fatal(err)
	}

	if err := f3.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := f3.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if o := listJSON(t, ns, "ruleset"); o.tables["inet segmesh"] != 0 {
		t.Errorf("table still there after Remove: %v", o.tables)
	}
	if got := ns.Run("nft", "-a", "-j", "list", "table", "inet", "hostfw"); got != hostfw {
		t.Errorf("table inet hostfw changed:\n%s\nbefore:\n%s", got, hostfw)
	}
}

func TestRootLargeApplyIsOneBatch(t *testing.T) {
	requireRoot(t)
	ns := newTestNS(t)
	f := ns.firewall(testConfig())
	if err := f.Install(); err != nil {
		t.Fatal(err)
	}
	d := Desired{Local: []netip.Addr{self4, self6}}
	for i := range 10000 {
		d.Ports = append(d.Ports, PortElement{peer4(i), ProtoTCP, 8000, 8100})
	}
	for i := range 10000 {
		d.Ports = append(d.Ports, PortElement{peer6(i), ProtoTCP, 8000, 8100})
	}
	g := ns.gen()
	start := time.Now()
	if err := f.Apply(d); err != nil {
		t.Fatal(err)
	}
	t.Logf("Apply of %d elements: %v", f.last.Adds, time.Since(start))
	if got := ns.gen() - g; got != 1 || f.last != (batchStats{Adds: 20002}) {
		t.Fatalf("%d transactions, %+v; want 1 transaction of 20002 additions", got, f.last)
	}
	if o := listJSON(t, ns, "table", "inet", "segmesh"); o.count(setAllow4R) != 10000 || o.count(setAllow6R) != 10000 {
		t.Fatalf("kernel holds %v", o.elems)
	}
	// One peer more: a one-element batch.
	d.Ports = append(d.Ports, PortElement{peer4(10000), ProtoUDP, 53, 53})
	g = ns.gen()
	start = time.Now()
	if err := f.Apply(d); err != nil {
		t.Fatal(err)
	}
	t.Logf("Apply of one more element among 20002: %v", time.Since(start))
	if got := ns.gen() - g; got != 1 || f.last != (batchStats{Adds: 1}) {
		t.Fatalf("%d transactions, %+v; want 1 transaction of 1 addition", got, f.last)
	}
	if allow4 := ns.Run("nft", "list", "set", "inet", "segmesh", "allow4"); !strings.Contains(allow4, peer4(10000).String()+" . udp . 53") {
		t.Errorf("new element missing")
	}
	// A restarted daemon reads the 20,003 elements back and finds nothing
	// to change.
	f2 := ns.firewall(testConfig())
	g = ns.gen()
	if err := f2.Install(); err != nil {
		t.Fatal(err)
	}
	if err := f2.Apply(d); err != nil {
		t.Fatal(err)
	}
	if got := ns.gen() - g; got != 0 || f2.cur.len() != 20003 {
		t.Errorf("restart: %d transactions, %d elements known; want 0 and 20003", got, f2.cur.len())
	}
}

func peer4(i int) netip.Addr { return netip.AddrFrom4([4]byte{100, 80, 100 + byte(i>>8), byte(i)}) }
func peer6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0x5e, 0x6d, 0, 13: 1, 14: byte(i >> 8), 15: byte(i)})
}

// TestRootApplyFailureIsReportedAndRecovered: a batch the kernel refuses
// (the table was deleted behind the Firewall's back) fails as a whole with
// the kernel's error; after Install the next Apply succeeds on the same
// connection (no stale reply left to misread).
func TestRootApplyFailureIsReportedAndRecovered(t *testing.T) {
	requireRoot(t)
	ns := newTestNS(t)
	f := ns.firewall(testConfig())
	if err := f.Install(); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(baseDesired()); err != nil {
		t.Fatal(err)
	}
	ns.Run("nft", "delete", "table", "inet", TableName)
	// Many messages, all refused.
	big := benchDesired(2000)
	g := ns.gen()
	if err := f.Apply(big); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Apply on a deleted table: %v, want ENOENT", err)
	}
	if d := ns.gen() - g; d != 0 {
		t.Errorf("the refused batch committed %d transactions", d)
	}
	if err := f.Install(); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(big); err != nil {
		t.Fatalf("Apply after Install: %v", err)
	}
	if o := listJSON(t, ns, "table", "inet", "segmesh"); o.count(setAllow4R) != 2000*9 || o.count(setICMP6) != 2000 {
		t.Errorf("kernel holds %v", o.elems)
	}
}
