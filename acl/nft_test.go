package acl

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

var (
	self4  = netip.MustParseAddr("100.80.0.2")
	self6  = netip.MustParseAddr("fd5e:6d00::2")
	peerA4 = netip.MustParseAddr("100.80.0.3")
	peerA6 = netip.MustParseAddr("fd5e:6d00::3")
	peerB4 = netip.MustParseAddr("100.80.0.4")
	peerB6 = netip.MustParseAddr("fd5e:6d00::4")
)

// baseDesired: peer A may reach tcp/80-90 and udp/53 (both families) and ping.
func baseDesired() Desired {
	return Desired{
		Local: []netip.Addr{self4, self6},
		Ports: []PortElement{
			{peerA4, ProtoTCP, 80, 90}, {peerA4, ProtoUDP, 53, 53},
			{peerA6, ProtoTCP, 80, 90}, {peerA6, ProtoUDP, 53, 53},
		},
		ICMP: []netip.Addr{peerA4, peerA6},
	}
}

// withPeerB adds peer B (tcp/5432 and any).
func withPeerB(d Desired) Desired {
	d.Ports = append(slices.Clone(d.Ports), PortElement{peerB4, ProtoTCP, 5432, 5432}, PortElement{peerB6, ProtoTCP, 5432, 5432})
	d.Any = append(slices.Clone(d.Any), peerB4, peerB6)
	return d
}

func installed(t *testing.T, k *fakeKernel) *Firewall {
	t.Helper()
	f := k.firewall(testConfig())
	if err := f.Install(); err != nil {
		t.Fatal(err)
	}
	return f
}

// newBatch runs fn and returns the description of the one batch it sent
// (nil when it sent none); more than one batch fails the test.
func newBatch(t *testing.T, k *fakeKernel, fn func() error) []string {
	t.Helper()
	n := k.batchCount()
	if err := fn(); err != nil {
		t.Fatal(err)
	}
	switch k.batchCount() - n {
	case 0:
		return nil
	case 1:
		return describeBatch(k.batch(n))
	default:
		t.Fatalf("%d batches sent, want at most 1", k.batchCount()-n)
		return nil
	}
}

func wantLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestApplyFromScratchAddsOnlyElements(t *testing.T) {
	k := newFakeKernel(t)
	f := installed(t, k)
	got := newBatch(t, k, func() error { return f.Apply(baseDesired()) })
	wantLines(t, "first Apply", got, []string{
		"add element local4 { 100.80.0.2 }",
		"add element local6 { fd5e:6d00::2 }",
		"add element allow4 { 100.80.0.3 . 17 . 53 }",
		"add element allow6 { fd5e:6d00::3 . 17 . 53 }",
		"add element allow4r_003 { 100.80.0.3 . 6 . 80-90 }",
		"add element allow6r_003 { fd5e:6d00::3 . 6 . 80-90 }",
		"add element icmp4 { 100.80.0.3 }",
		"add element icmp6 { fd5e:6d00::3 }",
	})
	// The exact encoding of a concatenated single-port element (no key end)
	// and of a range element (key and key end).
	var elems []netlink.Message
	for _, m := range k.batch(1) {
		if d := describeMsg(m)[0]; strings.Contains(d, "allow4 ") || strings.Contains(d, "allow4r_003 ") {
			elems = append(elems, m)
		}
	}
	checkGolden(t, "apply_allow4.golden", golden(elems))
}

func TestApplyPeerJoinAddsOnlyItsElements(t *testing.T) {
	k := newFakeKernel(t)
	f := installed(t, k)
	if err := f.Apply(baseDesired()); err != nil {
		t.Fatal(err)
	}
	got := newBatch(t, k, func() error { return f.Apply(withPeerB(baseDesired())) })
	wantLines(t, "peer join", got, []string{
		"add element allow4 { 100.80.0.4 . 6 . 5432 }",
		"add element allow6 { fd5e:6d00::4 . 6 . 5432 }",
		"add element any4 { 100.80.0.4 }",
		"add element any6 { fd5e:6d00::4 }",
	})
	if f.last != (batchStats{Adds: 4}) {
		t.Errorf("stats %+v", f.last)
	}
}

func TestApplyPeerLeaveDeletesOnlyItsElements(t *testing.T) {
	k := newFakeKernel(t)
	f := installed(t, k)
	if err := f.Apply(withPeerB(baseDesired())); err != nil {
		t.Fatal(err)
	}
	got := newBatch(t, k, func() error { return f.Apply(baseDesired()) })
	wantLines(t, "peer leave", got, []string{
		"delete element allow4 { 100.80.0.4 . 6 . 5432 }",
		"delete element allow6 { fd5e:6d00::4 . 6 . 5432 }",
		"delete element any4 { 100.80.0.4 }",
		"delete element any6 { fd5e:6d00::4 }",
	})
	wantLines(t, "kernel any4", k.elements("any4"), nil)
}

func TestApplyRangeChangeDeletesBeforeAdding(t *testing.T) {
	k := newFakeKernel(t)
	f := installed(t, k)
	if err := f.Apply(baseDesired()); err != nil {
		t.Fatal(err)
	}
	d := baseDesired()
	d.Ports[0].PortHi = 100 // 80-90 -> 80-100 overlaps the old element
	got := newBatch(t, k, func() error { return f.Apply(d) })
	wantLines(t, "range change", got, []string{
		"delete element allow4r_003 { 100.80.0.3 . 6 . 80-90 }",
		"add element allow4r_003 { 100.80.0.3 . 6 . 80-100 }",
	})
	// A range narrowed to one port moves to the exact-port set, and back.
	d.Ports[0].PortHi = 80
	got = newBatch(t, k, func() error { return f.Apply(d) })
	wantLines(t, "range to single port", got, []string{
		"delete element allow4r_003 { 100.80.0.3 . 6 . 80-100 }",
		"add element allow4 { 100.80.0.3 . 6 . 80 }",
	})
	got = newBatch(t, k, func() error { return f.Apply(baseDesired()) })
	wantLines(t, "single port to range", got, []string{
		"delete element allow4 { 100.80.0.3 . 6 . 80 }",
		"add element allow4r_003 { 100.80.0.3 . 6 . 80-90 }",
	})
	wantLines(t, "kernel allow4", k.elements("allow4"), []string{"100.80.0.3 . 17 . 53"})
	wantLines(t, "kernel allow4r", k.elements("allow4r"), []string{"100.80.0.3 . 6 . 80-90"})
}

func TestApplyModeSwitchReplacesOnlyFinalRule(t *testing.T) {
	k := newFakeKernel(t)
	f := installed(t, k)
	if err := f.Apply(baseDesired()); err != nil {
		t.Fatal(err)
	}
	audit := baseDesired()
	audit.Audit = true
	h := f.lay.finalHandle
	got := newBatch(t, k, func() error { return f.Apply(audit) })
	wantLines(t, "to audit", got, []string{
		fmt.Sprintf("replace rule handle %d segmesh mesh_in: objref type 1 name final; accept", h),
	})
	got = newBatch(t, k, func() error { return f.Apply(baseDesired()) })
	wantLines(t, "to enforce", got, []string{
		fmt.Sprintf("replace rule handle %d segmesh mesh_in: objref type 1 name final; drop", h),
	})
}

func TestApplyWithoutChangeSendsNothing(t *testing.T) {
	k := newFakeKernel(t)
	f := installed(t, k)
	if got := newBatch(t, k, func() error { return f.Apply(Desired{}) }); got != nil {
		t.Errorf("empty Apply after Install sent %v", got)
	}
	if err := f.Apply(baseDesired()); err != nil {
		t.Fatal(err)
	}
	// Same content in another order, with a duplicate: still no change.
	d := baseDesired()
	slices.Reverse(d.Ports)
	d.ICMP = append(d.ICMP, peerA4)
	if got := newBatch(t, k, func() error { return f.Apply(d) }); got != nil {
		t.Errorf("unchanged Apply sent %v", got)
	}
}

func TestApplyFailureIsAtomicAndRetried(t *testing.T) {
	k := newFakeKernel(t)
	f := installed(t, k)
	if err := f.Apply(baseDesired()); err != nil {
		t.Fatal(err)
	}
	before := k.elements("allow4r")
	// Fail on the additions, after the deletions of the same batch.
	k.fail, k.failType = unix.ENOMEM, unix.NFT_MSG_NEWSETELEM
	next := withPeerB(baseDesired())
	next.Ports = next.Ports[1:] // also delete 100.80.0.3 . tcp . 80-90
	err := f.Apply(next)
	if !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("Apply error %v, want ENOMEM", err)
	}
	wantLines(t, "kernel allow4r after the failed batch", k.elements("allow4r"), before)
	// The retry sends the whole diff again (after reading the kernel).
	got := newBatch(t, k, func() error { return f.Apply(next) })
	wantLines(t, "retry", got, []string{
		"delete element allow4r_003 { 100.80.0.3 . 6 . 80-90 }",
		"add element allow4 { 100.80.0.4 . 6 . 5432 }",
		"add element allow6 { fd5e:6d00::4 . 6 . 5432 }",
		"add element any4 { 100.80.0.4 }",
		"add element any6 { fd5e:6d00::4 }",
	})
	wantLines(t, "kernel allow4", k.elements("allow4"), []string{"100.80.0.3 . 17 . 53", "100.80.0.4 . 6 . 5432"})
	wantLines(t, "kernel allow4r", k.elements("allow4r"), nil)
}

func TestApplyRejectsInvalidDesired(t *testing.T) {
	k := newFakeKernel(t)
	f := installed(t, k)
	for name, d := range map[string]Desired{
		"invalid local": {Local: []netip.Addr{{}}},
		"reversed":      {Ports: []PortElement{{peerA4, ProtoTCP, 90, 80}}},
		"icmp ports":    {Ports: []PortElement{{peerA4, ProtoICMP, 1, 2}}},
		"invalid src":   {Ports: []PortElement{{netip.Addr{}, ProtoTCP, 1, 2}}},
	} {
		if got := newBatch(t, k, func() error {
			if err := f.Apply(d); err == nil {
				return fmt.Errorf("%s: Apply accepted %+v", name, d)
			}
			return nil
		}); got != nil {
			t.Errorf("%s: sent %v", name, got)
		}
	}
}

func TestApplyBeforeInstall(t *testing.T) {
	k := newFakeKernel(t)
	f := k.firewall(testConfig())
	if err := f.Apply(baseDesired()); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("Apply before Install: %v", err)
	}
	if _, _, err := f.Counters(); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("Counters before Install: %v", err)
	}
}

func TestApplyRefusesMoreElementsThanTheSetsHold(t *testing.T) {
	// exactSetSize+1 single ports of IPv4 sources (odd ports: no two merge
	// into a range).
	ports := baseDesired()
	ports.Ports = nil
	for src := 0; len(ports.Ports) <= exactSetSize; src++ {
		for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
			for port := 1; port < 65536 && len(ports.Ports) <= exactSetSize; port += 2 {
				ports.Ports = append(ports.Ports, PortElement{peer4(src), proto, uint16(port), uint16(port)})
			}
		}
	}
	// sourceSetSize+1 IPv6 sources allowed ICMP.
	icmp := baseDesired()
	for i := range sourceSetSize + 1 {
		icmp.ICMP = append(icmp.ICMP, netip.AddrFrom16([16]byte{0xfd, 0x5e, 0x6d, 0, 12: 1, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}))
	}
	for name, d := range map[string]Desired{"single ports": ports, "icmp sources": icmp} {
		t.Run(name, func(t *testing.T) {
			k := newFakeKernel(t)
			f := installed(t, k)
			if err := f.Apply(baseDesired()); err != nil {
				t.Fatal(err)
			}
			got := newBatch(t, k, func() error {
				if err := f.Apply(d); err == nil || !strings.Contains(err.Error(), "capacity") {
					return fmt.Errorf("Apply over the capacity: %v, want a capacity error", err)
				}
				return nil
			})
			if got != nil {
				t.Errorf("refused Apply sent %d messages", len(got))
			}
			// The state is intact: the next Apply sends only its difference.
			got = newBatch(t, k, func() error { return f.Apply(withPeerB(baseDesired())) })
			wantLines(t, "join after the refused Apply", got, []string{
				"add element allow4 { 100.80.0.4 . 6 . 5432 }",
				"add element allow6 { fd5e:6d00::4 . 6 . 5432 }",
				"add element any4 { 100.80.0.4 }",
				"add element any6 { fd5e:6d00::4 }",
			})
		})
	}
}

func TestApplyRefusesRangeInTheWrongShard(t *testing.T) {
	k := newFakeKernel(t)
	installed(t, k)
	// Someone put 100.80.0.3's range into shard 4.
	c := k.conn()
	if err := c.SetAddElements(&nftables.Set{Table: &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}, Name: shardNames[0][4]},
		kinds[sAllow4R].setElements([]elem{{lo: v4mapped | 0x64500003, proto: ProtoTCP, portLo: 80, portHi: 90}})); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	f := k.firewall(testConfig())
	if got := newBatch(t, k, f.Install); got != nil {
		t.Fatalf("Install did not keep the table: %v", got)
	}
	err := f.Apply(baseDesired())
	if err == nil || !strings.Contains(err.Error(), "shard") {
		t.Fatalf("Apply over a misplaced element: %v, want an error naming the shard", err)
	}
}
