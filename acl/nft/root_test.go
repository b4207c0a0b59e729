package nft

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
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

// sources counts the elements of the identities' source sets of family
// "4" or "6" (sets id_N_s4 / id_N_s6).
func (o nftObjects) sources(family string) int {
	n := 0
	for name, c := range o.elems {
		if strings.HasPrefix(name, idPrefix) && strings.HasSuffix(name, "_s"+family) {
			n += c
		}
	}
	return n
}

func listJSON(t testing.TB, ns *testNS, args ...string) nftObjects {
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
			case "set", "map":
				o.sets[table]++
				if v["table"] == TableName {
					o.setTypes[fmt.Sprint(v["name"])] = fmt.Sprint(v["type"], " ", v["flags"])
					if e, ok := v["elem"].([]any); ok {
						// Distinct elements: a dump of a hash set the
						// kernel is resizing may list one twice.
						seen := map[string]bool{}
						for _, x := range e {
							seen[fmt.Sprint(x)] = true
						}
						o.elems[fmt.Sprint(v["name"])] = len(seen)
					}
				}
			}
		}
	}
	return o
}

var (
	self4 = netip.MustParseAddr("100.80.0.1")
	self6 = netip.MustParseAddr("fd5e:6d00::1")
)

func peer4(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, 81 + byte(i>>16), byte(i >> 8), byte(i)})
}
func peer6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0x5e, 0x6d, 0, 12: 1, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
}

// meshState is n peers (both families) in nIDs identities of 20 ports
// each (10 single tcp ports, 9 tcp ranges, udp 53, icmp), peer i in
// identity 1 + i % nIDs.
func meshState(n, nIDs int) acl.Enforced {
	e := acl.Enforced{Local: []netip.Addr{self4, self6}}
	for id := 1; id <= nIDs; id++ {
		ident := acl.Identity{ID: uint32(id), ICMP: true, UDP: []acl.PortRange{{Lo: 53, Hi: 53}}}
		for j := range 10 {
			p := uint16(1000*id + 2*j)
			ident.TCP = append(ident.TCP, acl.PortRange{Lo: p, Hi: p})
		}
		for j := range 9 {
			p := uint16(1000*id + 100 + 20*j)
			ident.TCP = append(ident.TCP, acl.PortRange{Lo: p, Hi: p + 10})
		}
		e.Identities = append(e.Identities, ident)
	}
	for i := range n {
		id := uint32(1 + i%nIDs)
		e.Sources = append(e.Sources, acl.Source{Addr: peer4(i), ID: id})
	}
	for i := range n {
		id := uint32(1 + i%nIDs)
		e.Sources = append(e.Sources, acl.Source{Addr: peer6(i), ID: id})
	}
	return e
}

// joined returns e with peer n (both families) added to identity id.
func joined(e acl.Enforced, n int, id uint32) acl.Enforced {
	e.Sources = append(slices.Clone(e.Sources), acl.Source{Addr: peer4(n), ID: id}, acl.Source{Addr: peer6(n), ID: id})
	slices.SortFunc(e.Sources, func(a, b acl.Source) int { return a.Addr.Compare(b.Addr) })
	return e
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
	o := listJSON(t, ns, "ruleset")
	if o.tables["inet segmesh"] != 1 || o.chains["inet segmesh"] != 10 || o.rules["inet segmesh"] != 54 || o.sets["inet segmesh"] != 16 {
		t.Errorf("layout counts: tables %v chains %v rules %v sets %v", o.tables, o.chains, o.rules, o.sets)
	}
	if p := o.prerouting; p["type"] != "filter" || p["hook"] != "prerouting" || p["prio"] != float64(-150) || p["policy"] != "accept" {
		t.Errorf("prerouting chain %v", p)
	}
	meshIn := ns.Run("nft", "list", "chain", "inet", "segmesh", "mesh_in")
	for _, want := range []string{"ip daddr != @local4 counter", "meta nfproto ipv4 jump src4", "meta nfproto ipv6 jump src6",
		"log group 8476 snaplen 128", "update @seen4 { ip saddr }", `counter name "final" drop`} {
		if !strings.Contains(meshIn, want) {
			t.Errorf("mesh_in lacks %q:\n%s", want, meshIn)
		}
	}
	for _, bad := range []string{"mark", "allow4", "ranges", "vmap"} {
		if tbl := ns.Run("nft", "list", "table", "inet", "segmesh"); strings.Contains(tbl, bad) {
			t.Errorf("table holds %q:\n%s", bad, tbl)
		}
	}

	// Elements and mode switch, then a restart (Install by a new Firewall)
	// over the crash-left table: kept, not duplicated, back in enforce mode.
	e := meshState(4, 2)
	e.Audit = true
	if err := f.Apply(e); err != nil {
		t.Fatal(err)
	}
	tbl := ns.Run("nft", "list", "table", "inet", "segmesh")
	for _, want := range []string{"ip saddr @id_1_s4 goto id_1", "ip6 saddr @id_2_s6 goto id_2",
		"chain id_1 {", "meta l4proto . th dport @id_1_p goto allow_in", "meta l4proto . th dport @id_2_r goto allow_in",
		"icmp type echo-request goto allow_in", "icmpv6 type echo-request goto allow_in", "tcp . 2100-2110", "udp . 53", `counter name "final" accept`} {
		if !strings.Contains(tbl, want) {
			t.Errorf("table lacks %q:\n%s", want, tbl)
		}
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
	if o.tables["inet segmesh"] != 1 || o.chains["inet segmesh"] != 12 || o.sources("4") != 4 || o.elems["id_1_r"] != 9 {
		t.Errorf("after Install over our table: tables %v chains %v elements %v", o.tables, o.chains, o.elems)
	}
	if chain := ns.Run("nft", "list", "chain", "inet", "segmesh", "mesh_in"); !strings.Contains(chain, `counter name "final" drop`) {
		t.Errorf("Install did not return to enforce mode:\n%s", chain)
	}
	// The first Apply of the new Firewall diffs against what it read back
	// (sources, identities, dispatch order): a join is one element per
	// family, as without the restart.
	g = ns.gen()
	if err := f2.Apply(joined(meshState(4, 2), 4, 1)); err != nil {
		t.Fatal(err)
	}
	if d := ns.gen() - g; d != 1 || f2.last != (batchStats{SourceAdds: [2]int{1, 1}}) {
		t.Errorf("first Apply after restart: %d transactions, %+v", d, f2.last)
	}
	// An identity no longer used is deleted with its sets.
	one := meshState(4, 1)
	if err := f2.Apply(one); err != nil {
		t.Fatal(err)
	}
	if o := listJSON(t, ns, "ruleset"); o.chains["inet segmesh"] != 11 || o.sets["inet segmesh"] != 20 || o.sources("4") != 4 {
		t.Errorf("after dropping identity 2: chains %v sets %v elements %v", o.chains, o.sets, o.elems)
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
	if o := listJSON(t, ns, "ruleset"); o.chains["inet segmesh"] != 10 || o.rules["inet segmesh"] != 54 {
		t.Errorf("after recreation: chains %v rules %v", o.chains, o.rules)
	}
	if err := f3.Apply(one); err != nil {
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

// TestRootLargeApplyIsOneBatch: 10,000 peers in 5 identities; a join into
// an existing identity is one set element per family; a tag change moves
// one element; a policy change rewrites one identity only.
func TestRootLargeApplyIsOneBatch(t *testing.T) {
	ns, f := installedFirewall(t)
	e := meshState(10000, 5)
	g := ns.gen()
	start := time.Now()
	if err := f.Apply(e); err != nil {
		t.Fatal(err)
	}
	t.Logf("first Apply of 10,000 peers: %v", time.Since(start))
	if got := ns.gen() - g; got != 1 || f.last.SourceAdds != [2]int{10000, 10000} || f.last.IdentitiesNew != 5 {
		t.Fatalf("%d transactions, %+v", got, f.last)
	}
	o := listJSON(t, ns, "table", "inet", "segmesh")
	if o.sources("4") != 10000 || o.sources("6") != 10000 || o.elems["id_3_s4"] != 2000 || o.elems["id_3_p"] != 11 || o.elems["id_3_r"] != 9 {
		t.Fatalf("kernel holds %v", o.elems)
	}
	j := joined(e, 10000, 3)
	g = ns.gen()
	if err := f.Apply(j); err != nil {
		t.Fatal(err)
	}
	if got := ns.gen() - g; got != 1 || f.last != (batchStats{SourceAdds: [2]int{1, 1}}) {
		t.Fatalf("join: %d transactions, %+v; want 1 transaction of one element per family", got, f.last)
	}
	if m := ns.Run("nft", "list", "set", "inet", "segmesh", "id_3_s4"); !strings.Contains(m, peer4(10000).String()) {
		t.Errorf("new element missing")
	}
	// Tag change: peer 10000 moves to identity 4 (a new slice: Apply keeps
	// the last one).
	j.Sources = slices.Clone(j.Sources)
	for i := range j.Sources {
		if a := j.Sources[i].Addr; a == peer4(10000) || a == peer6(10000) {
			j.Sources[i].ID = 4
		}
	}
	if err := f.Apply(j); err != nil {
		t.Fatal(err)
	}
	if f.last != (batchStats{SourceAdds: [2]int{1, 1}, SourceDels: [2]int{1, 1}}) {
		t.Fatalf("tag change: %+v", f.last)
	}
	// Policy change of one identity.
	j.Identities = slices.Clone(j.Identities)
	j.Identities[1].UDP = append(slices.Clone(j.Identities[1].UDP), acl.PortRange{Lo: 123, Hi: 123})
	if err := f.Apply(j); err != nil {
		t.Fatal(err)
	}
	if f.last != (batchStats{IdentitiesRewritten: 1, PortElements: 21}) {
		t.Fatalf("policy change: %+v", f.last)
	}
	// A restarted daemon reads the table back: the same state sends
	// nothing.
	f2 := ns.firewall(testConfig())
	if err := f2.Install(); err != nil {
		t.Fatal(err)
	}
	g = ns.gen()
	if err := f2.Apply(j); err != nil {
		t.Fatal(err)
	}
	if d := ns.gen() - g; d != 0 || f2.last != (batchStats{}) {
		t.Errorf("restart: %d transactions, %+v", d, f2.last)
	}
	// What is not exactly as Apply writes it is rewritten after a restart:
	// a stray rule in identity 2's chain, a port missing from identity 3's
	// set, dispatch rules out of step.
	ns.Run("nft", "add rule inet segmesh id_2 accept")
	ns.Run("nft", "delete element inet segmesh id_3_p { tcp . 3000 }")
	ns.Run("nft", "add rule inet segmesh src6 accept")
	// peer4(1) is in identity 2; a stray copy in identity 1's set goes.
	ns.Run("nft", "add element inet segmesh id_1_s4 { "+peer4(1).String()+" }")
	f3 := ns.firewall(testConfig())
	if err := f3.Install(); err != nil {
		t.Fatal(err)
	}
	if err := f3.Apply(j); err != nil {
		t.Fatal(err)
	}
	if f3.last != (batchStats{SourceAdds: [2]int{1, 0}, SourceDels: [2]int{2, 0}, IdentitiesRewritten: 2, PortElements: 41, DispatchRewritten: true}) {
		t.Errorf("restart over a changed table: %+v", f3.last)
	}
	if chain := ns.Run("nft", "list", "chain", "inet", "segmesh", "src6"); strings.Contains(chain, "accept") {
		t.Errorf("stray dispatch rule kept:\n%s", chain)
	}
	if set := ns.Run("nft", "list", "set", "inet", "segmesh", "id_1_s4"); strings.Contains(set, peer4(1).String()+",") || strings.Contains(set, peer4(1).String()+" ") {
		t.Errorf("stray source kept in id_1_s4:\n%s", set)
	}
	if set := ns.Run("nft", "list", "set", "inet", "segmesh", "id_2_s4"); !strings.Contains(set, peer4(1).String()) {
		t.Errorf("source lost from id_2_s4:\n%s", set)
	}
	if set := ns.Run("nft", "list", "set", "inet", "segmesh", "id_3_p"); !strings.Contains(set, "tcp . 3000") {
		t.Errorf("identity 3's port not restored:\n%s", set)
	}
}

// TestRootCapacity: 100,000 peers with a 20-port policy fit; more sources
// than the table takes are refused before anything is sent.
func TestRootCapacity(t *testing.T) {
	ns, f := installedFirewall(t)
	e := meshState(100000, 50)
	start := time.Now()
	if err := f.Apply(e); err != nil {
		t.Fatal(err)
	}
	t.Logf("first Apply of 100,000 peers in 50 identities: %v", time.Since(start))
	before := ns.Run("nft", "list", "chain", "inet", "segmesh", "id_7")
	g := ns.gen()
	big := meshState(SourceCapacity+1, 50)
	big.Identities[6].TCP = nil
	err := f.Apply(big)
	if !errors.Is(err, ErrCapacity) || !strings.Contains(err.Error(), "IPv4 sources, at most 262144") {
		t.Fatalf("Apply of %d sources: %v, want a capacity error", SourceCapacity+1, err)
	}
	if d := ns.gen() - g; d != 0 {
		t.Errorf("a refused Apply committed %d transactions", d)
	}
	if got := ns.Run("nft", "list", "chain", "inet", "segmesh", "id_7"); got != before {
		t.Errorf("table changed")
	}
	// Still in step: a join is one element per family.
	if err := f.Apply(joined(e, 100000, 7)); err != nil || f.last != (batchStats{SourceAdds: [2]int{1, 1}}) {
		t.Fatalf("join after refusal: %v, %+v", err, f.last)
	}
}

// TestRootApplyFailureIsReportedAndRecovered: a batch the kernel refuses
// (the table was deleted behind the Firewall's back) fails as a whole with
// the kernel's error; after Install the next Apply succeeds.
func TestRootApplyFailureIsReportedAndRecovered(t *testing.T) {
	ns, f := installedFirewall(t)
	if err := f.Apply(meshState(10, 2)); err != nil {
		t.Fatal(err)
	}
	ns.Run("nft", "delete", "table", "inet", TableName)
	big := meshState(2000, 3)
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
	if o := listJSON(t, ns, "table", "inet", "segmesh"); o.sources("4") != 2000 || o.sources("6") != 2000 {
		t.Errorf("kernel holds %v", o.elems)
	}
}
