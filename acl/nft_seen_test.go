package acl

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

func TestDeniedBySourceReadsSeenSets(t *testing.T) {
	k := newFakeKernel(t)
	f := k.firewall(testConfig())
	if _, err := f.DeniedBySource(); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("DeniedBySource before Install: %v", err)
	}
	if err := f.Install(); err != nil {
		t.Fatal(err)
	}
	if got, err := f.DeniedBySource(); err != nil || len(got) != 0 {
		t.Fatalf("fresh table: %v, %v", got, err)
	}
	// What the kernel's update rules would have added.
	c := k.conn()
	add := func(set string, a netip.Addr, p, b uint64) {
		t.Helper()
		if err := c.SetAddElements(f.lay.sets[set], []nftables.SetElement{
			{Key: a.AsSlice(), Counter: &expr.Counter{Packets: p, Bytes: b}}}); err != nil {
			t.Fatal(err)
		}
	}
	add(setSeen4, peerA4, 3, 180)
	add(setSeen4, peerB4, 1, 60)
	add(setSeen6, peerA6, 7, 560)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := f.DeniedBySource()
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]Count{peerA4: {3, 180}, peerB4: {1, 60}, peerA6: {7, 560}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("DeniedBySource = %v, want %v", got, want)
	}

	// Apply never touches the seen sets, also when it reads the kernel
	// after a restart that kept the table.
	f2 := k.firewall(testConfig())
	if err := f2.Install(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []Desired{baseDesired(), withPeerB(baseDesired()), {}} {
		for _, line := range newBatch(t, k, func() error { return f2.Apply(d) }) {
			if strings.Contains(line, "seen") {
				t.Errorf("Apply touched a seen set: %s", line)
			}
		}
	}
	if got, err := f2.DeniedBySource(); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after restart and Apply: %v, %v; want %v", got, err, want)
	}
}

// previousLayout queues on c the layout of an earlier version and returns
// its sets by name:
//
//	1: no seen sets; allow4/allow6 are interval sets holding every port element
//	2: 1 with the seen sets
//	3: 2 with single ports in the hash sets allow4/allow6 and ranges in one
//	   interval set per family, allow4r/allow6r (no shards)
func previousLayout(t *testing.T, c *nftables.Conn, version int) map[string]*nftables.Set {
	t.Helper()
	l := newLayout()
	c.AddTable(l.table)
	c.AddChain(l.prerouting)
	c.AddChain(l.meshIn)
	c.AddObj(l.counter)
	sets := map[string]*nftables.Set{}
	add := func(s nftables.Set) {
		if err := c.AddSet(&s, nil); err != nil {
			t.Fatal(err)
		}
		sets[s.Name], l.sets[s.Name] = &s, &s
	}
	add(*l.sets[setLocal4])
	add(*l.sets[setLocal6])
	add(nftables.Set{Table: l.table, Name: setAllow4, KeyType: allowKey4, Concatenation: true, Interval: version < 3})
	add(nftables.Set{Table: l.table, Name: setAllow6, KeyType: allowKey6, Concatenation: true, Interval: version < 3})
	if version >= 3 {
		add(nftables.Set{Table: l.table, Name: setAllow4R, KeyType: allowKey4, Concatenation: true, Interval: true})
		add(nftables.Set{Table: l.table, Name: setAllow6R, KeyType: allowKey6, Concatenation: true, Interval: true})
	}
	for _, name := range []string{setICMP4, setICMP6, setAny4, setAny6} {
		add(*l.sets[name])
	}
	if version >= 2 {
		add(*l.sets[setSeen4])
		add(*l.sets[setSeen6])
	}
	for _, r := range l.rules(testConfig(), false) {
		if r.chain != l.prerouting && r.chain != l.meshIn {
			continue // a shard chain
		}
		exprs := r.exprs
		for _, e := range r.exprs {
			switch e := e.(type) {
			case *expr.Dynset:
				if version < 2 {
					exprs = nil
				}
			case *expr.Lookup:
				switch {
				case e.SetName != mapRanges4 && e.SetName != mapRanges6:
				case version < 3:
					exprs = nil
				default: // the range set's lookup
					exprs = l.portMatch(e.SetName == mapRanges4, map[string]string{mapRanges4: setAllow4R, mapRanges6: setAllow6R}[e.SetName])
				}
			}
		}
		if exprs != nil {
			c.AddRule(&nftables.Rule{Table: l.table, Chain: r.chain, Exprs: exprs})
		}
	}
	return sets
}

func TestInstallRecreatesPreviousLayout(t *testing.T) {
	for version := 1; version <= 3; version++ {
		t.Run(fmt.Sprintf("version=%d", version), func(t *testing.T) {
			k := newFakeKernel(t)
			c := k.conn()
			sets := previousLayout(t, c, version)
			rng := nftables.SetElement{Key: []byte{100, 80, 0, 3, 6, 0, 0, 0, 0, 80, 0, 0}, KeyEnd: []byte{100, 80, 0, 3, 6, 0, 0, 0, 0, 90, 0, 0}}
			one := nftables.SetElement{Key: []byte{100, 80, 0, 3, 17, 0, 0, 0, 0, 53, 0, 0}}
			var err error
			if version < 3 { // a range and a single port, both in the interval set allow4
				one.KeyEnd = one.Key
				err = c.SetAddElements(sets[setAllow4], []nftables.SetElement{rng, one})
			} else {
				err = errors.Join(c.SetAddElements(sets[setAllow4], []nftables.SetElement{one}),
					c.SetAddElements(sets[setAllow4R], []nftables.SetElement{rng}))
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			f := k.firewall(testConfig())
			got := newBatch(t, k, f.Install)
			wantLines(t, "recreate", got, append([]string{"delete table inet segmesh"}, installWant...))
			got = newBatch(t, k, func() error { return f.Apply(baseDesired()) })
			if len(got) != 8 || f.last != (batchStats{Adds: 8}) {
				t.Errorf("first Apply on the recreated table: %v", got)
			}
			wantLines(t, "allow4", k.elements("allow4"), []string{"100.80.0.3 . 17 . 53"})
			wantLines(t, "allow4r", k.elements("allow4r"), []string{"100.80.0.3 . 6 . 80-90"})
		})
	}
}

func TestInstallRecreatesSeenSetWithoutCounter(t *testing.T) {
	// A seen set without its own counter makes the kernel dump the update
	// rule with the rule's counter: the layout differs.
	k := newFakeKernel(t)
	f := installed(t, k)
	var update4 []expr.Any // update @seen4 { ip saddr counter }: two rules before the final one
	rules := f.lay.rules(testConfig(), false)
	for i, r := range rules {
		if r.final {
			update4 = rules[i-2].exprs
		}
	}
	if d, ok := update4[len(update4)-1].(*expr.Dynset); !ok || d.SetName != setSeen4 {
		t.Fatalf("rule before last but one of mesh_in is not the seen4 update: %v", update4)
	}
	var list []netlink.Attribute
	for _, e := range update4 {
		b, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
	}
	tb := k.table(byte(nftables.TableFamilyINet), TableName)
	for _, s := range tb.sets {
		if s.name == setSeen4 {
			s.attrs = slices.DeleteFunc(slices.Clone(s.attrs), func(a netlink.Attribute) bool { return a.Type == nftaSetExpr })
		}
	}
	found := false
	for _, r := range tb.rules {
		if r.handle == f.lay.finalHandle-2 {
			r.exprs, found = nltest.MustMarshalAttributes(list), true
		}
	}
	if !found {
		t.Fatal("seen4 update rule not found")
	}
	got := newBatch(t, k, k.firewall(testConfig()).Install)
	if len(got) == 0 || got[0] != "delete table inet segmesh" {
		t.Errorf("Install kept a table whose seen4 has no counter: %v", got)
	}
}

// TestRootDeniedBySource sends denied packets from two sources (each in
// both families) and finds them counted apart, per source, in the kernel.
func TestRootDeniedBySource(t *testing.T) {
	p := newMeshPair(t)
	src2v4, src2v6 := netip.MustParseAddr("100.80.0.5"), netip.MustParseAddr("fd5e:6d00::5")
	p.client.Run("ip", "addr", "add", "100.80.0.5/16", "dev", "vA")
	p.client.Run("ip", "addr", "add", "fd5e:6d00::5/48", "dev", "vA", "nodad")
	p.apply(Desired{Local: []netip.Addr{srv4, srv6},
		Ports: []PortElement{{cli4, ProtoTCP, 8080, 8080}, {cli6, ProtoTCP, 8080, 8080}}})
	before := p.denied()

	// UDP datagrams of 10 bytes to a port nobody may reach: 38 bytes per
	// IPv4 packet, 58 per IPv6 packet as counted at prerouting.
	sends := map[netip.Addr]int{cli4: 3, src2v4: 5, cli6: 2, src2v6: 4}
	for src, n := range sends {
		var conn *net.UDPConn
		var err error
		dst := srv4
		if src.Is6() {
			dst = srv6
		}
		p.client.Do(func() error {
			conn, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9999)))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			if _, err := conn.Write([]byte("0123456789")); err != nil {
				t.Fatal(err)
			}
		}
		_ = conn.Close()
	}
	want := map[netip.Addr]Count{cli4: {3, 3 * 38}, src2v4: {5, 5 * 38}, cli6: {2, 2 * 58}, src2v6: {4, 4 * 58}}
	waitFor(t, "per-source denied counts", 5*time.Second, func() error {
		got, err := p.fw.DeniedBySource()
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("DeniedBySource = %v, want %v", got, want)
		}
		return nil
	})
	if after := p.denied(); after-before != 14 {
		t.Errorf("final counter grew by %d, want 14 (the sum of the sources)", after-before)
	}
	seen4 := p.server.Run("nft", "list", "set", "inet", "segmesh", "seen4")
	if !strings.Contains(seen4, "100.80.0.5 counter packets 5 bytes 190 expires") {
		t.Errorf("nft list set inet segmesh seen4:\n%s", seen4)
	}

	// Allowed traffic and traffic not addressed to this node are not
	// counted; audited packets are.
	p.mustConnect(srv4, 8080)
	p.mustTimeOut(netip.MustParseAddr("10.99.0.1"), 8080)
	p.apply(Desired{Local: []netip.Addr{srv4, srv6}, Audit: true})
	p.client.Do(func() error {
		conn, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src2v4, 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(srv4, 9999)))
		if err == nil {
			_, err = conn.Write([]byte("0123456789"))
			_ = conn.Close()
		}
		return err
	})
	want[src2v4] = Count{6, 6 * 38}
	waitFor(t, "audited packet counted", 5*time.Second, func() error {
		got, err := p.fw.DeniedBySource()
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("DeniedBySource = %v, want %v", got, want)
		}
		return nil
	})
}

// TestRootInstallOverPreviousLayout: a table written by an earlier version
// is replaced by the current layout in one transaction.
func TestRootInstallOverPreviousLayout(t *testing.T) {
	requireRoot(t)
	for version := 1; version <= 3; version++ {
		t.Run(fmt.Sprintf("version=%d", version), func(t *testing.T) {
			ns := newTestNS(t)
			old := previousTable(t, version)
			file := filepath.Join(t.TempDir(), "old.nft")
			if err := os.WriteFile(file, []byte(old), 0o600); err != nil {
				t.Fatal(err)
			}
			ns.Run("nft", "-f", file)
			if got := ns.Run("nft", "list", "table", "inet", "segmesh"); got != old {
				t.Fatalf("previous layout not loaded as written:\n%s", got)
			}
			if version < 3 {
				ns.Run("nft", "add element inet segmesh allow4 { 100.80.0.3 . tcp . 80-90, 100.80.0.3 . udp . 53 }")
			} else {
				ns.Run("nft", "add element inet segmesh allow4 { 100.80.0.3 . udp . 53 }")
				ns.Run("nft", "add element inet segmesh allow4r { 100.80.0.3 . tcp . 80-90 }")
			}
			g := ns.gen()
			f := ns.firewall(testConfig())
			if err := f.Install(); err != nil {
				t.Fatal(err)
			}
			if d := ns.gen() - g; d != 1 {
				t.Errorf("Install over the previous layout committed %d transactions, want 1", d)
			}
			if got := normTable(ns.Run("nft", "list", "table", "inet", "segmesh")); got != wantTable {
				t.Errorf("after Install over the previous layout:\n%s", got)
			}
			if err := f.Apply(baseDesired()); err != nil {
				t.Fatal(err)
			}
			if f.last != (batchStats{Adds: 8}) {
				t.Errorf("first Apply: %+v", f.last)
			}
		})
	}
}
