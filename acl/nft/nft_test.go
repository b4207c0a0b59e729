package nft

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/segmesh/segmesh/acl"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// These tests run the Firewall against the fake kernel (fake_test.go,
// through nftables.WithTestDial): the messages of each batch, no root.

// batchSummary describes a batch: per message its type and target
// (set, chain) and, for element messages, the element count.
func batchSummary(msgs []netlink.Message) []string {
	var out []string
	for _, m := range msgs {
		as := parseAttrs(m.Data[4:])
		var s string
		switch typ := nftType(m); typ {
		case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
			op := "add"
			if typ == unix.NFT_MSG_DELSETELEM {
				op = "del"
			}
			n := 0
			if l := attr(as, unix.NFTA_SET_ELEM_LIST_ELEMENTS); l != nil {
				n = len(parseAttrs(l))
			}
			s = op + " " + attrStr(as, unix.NFTA_SET_ELEM_LIST_SET) + " " + string(rune('0'+min(n, 9)))
		case unix.NFT_MSG_NEWCHAIN:
			s = "chain " + attrStr(as, unix.NFTA_CHAIN_NAME)
		case unix.NFT_MSG_DELCHAIN:
			s = "delchain " + attrStr(as, unix.NFTA_CHAIN_NAME)
		case unix.NFT_MSG_NEWSET:
			s = "set " + attrStr(as, unix.NFTA_SET_NAME)
		case unix.NFT_MSG_DELSET:
			s = "delset " + attrStr(as, unix.NFTA_SET_NAME)
		case unix.NFT_MSG_NEWRULE:
			s = "rule " + attrStr(as, unix.NFTA_RULE_CHAIN)
		case unix.NFT_MSG_DELRULE:
			s = "flush " + attrStr(as, unix.NFTA_RULE_CHAIN)
		default:
			s = "type " + string(rune('0'+typ%10))
		}
		out = append(out, s)
	}
	return out
}

// fakeApplied returns a fake kernel and a Firewall on it with meshState(n,
// ids) applied.
func fakeApplied(t *testing.T, n, ids int) (*fakeKernel, *Firewall, acl.Enforced) {
	t.Helper()
	k := newFakeKernel(t)
	f := k.firewall(testConfig())
	if err := f.Install(); err != nil {
		t.Fatal(err)
	}
	e := meshState(n, ids)
	if err := f.Apply(e); err != nil {
		t.Fatal(err)
	}
	return k, f, e
}

func TestFakeJoinIsOneElementPerFamily(t *testing.T) {
	k, f, e := fakeApplied(t, 100, 5)
	if n := k.sources("4"); n != 100 {
		t.Fatalf("the IPv4 source sets hold %d elements, want 100", n)
	}
	before := k.batchCount()
	if err := f.Apply(joined(e, 100, 3)); err != nil {
		t.Fatal(err)
	}
	if k.batchCount() != before+1 {
		t.Fatalf("%d batches, want 1", k.batchCount()-before)
	}
	got := strings.Join(batchSummary(k.batch(before)), ", ")
	if want := "add id_3_s4 1, add id_3_s6 1"; got != want {
		t.Fatalf("join batch: %s, want %s", got, want)
	}
	if n := k.sources("4"); n != 101 {
		t.Fatalf("the IPv4 source sets hold %d elements", n)
	}

	// A policy change of one identity rewrites only its sets and chain.
	p := joined(e, 100, 3)
	p.Identities[1].UDP = nil
	before = k.batchCount()
	if err := f.Apply(p); err != nil {
		t.Fatal(err)
	}
	got = strings.Join(batchSummary(k.batch(before)), ", ")
	if want := "del id_2_p 0, del id_2_r 0, add id_2_p 9, add id_2_r 9, flush id_2, rule id_2, rule id_2, rule id_2, rule id_2"; got != want {
		t.Fatalf("policy change batch: %s\nwant %s", got, want)
	}

	// Nothing changed: nothing sent.
	before = k.batchCount()
	if err := f.Apply(p); err != nil || k.batchCount() != before {
		t.Fatalf("unchanged Apply: %v, %d batches", err, k.batchCount()-before)
	}

	// An identity no longer used: its sources, then its objects, go.
	q := meshState(100, 5)
	q.Identities = q.Identities[:4]
	q.Sources = q.Sources[:0]
	for _, s := range meshState(100, 5).Sources {
		if s.ID != 5 {
			q.Sources = append(q.Sources, s)
		}
	}
	before = k.batchCount()
	if err := f.Apply(q); err != nil {
		t.Fatal(err)
	}
	got = strings.Join(batchSummary(k.batch(before)), ", ")
	if !strings.HasSuffix(got, "flush id_5, delchain id_5, delset id_5_p, delset id_5_r, delset id_5_s4, delset id_5_s6") ||
		!strings.Contains(got, "flush src4, rule src4, rule src4, rule src4, rule src4, flush src6") || strings.Contains(got, "del id_5_s4") {
		t.Fatalf("identity removal batch: %s", got)
	}
}

func TestFakeCapacityRefusedBeforeSending(t *testing.T) {
	k := newFakeKernel(t)
	f := k.firewall(testConfig())
	if err := f.Install(); err != nil {
		t.Fatal(err)
	}
	before := k.batchCount()
	e := meshState(10, 2)
	e.Sources = e.Sources[:0]
	for i := range SourceCapacity + 1 {
		e.Sources = append(e.Sources, src(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1))
	}
	err := f.Apply(e)
	if !errors.Is(err, ErrCapacity) {
		t.Fatalf("Apply: %v, want ErrCapacity", err)
	}
	if k.batchCount() != before {
		t.Fatalf("a refused Apply sent %d batches", k.batchCount()-before)
	}
	// Invalid input is refused too: unsorted sources, unknown identities.
	bad := meshState(3, 1)
	bad.Sources[0], bad.Sources[1] = bad.Sources[1], bad.Sources[0]
	if err := f.Apply(bad); err == nil || !strings.Contains(err.Error(), "sorted") {
		t.Fatalf("unsorted sources: %v", err)
	}
	bad = meshState(3, 1)
	bad.Sources[0].ID = 9
	if err := f.Apply(bad); err == nil || !strings.Contains(err.Error(), "not listed") {
		t.Fatalf("unknown identity: %v", err)
	}
	if k.batchCount() != before {
		t.Fatalf("refused Applies sent %d batches", k.batchCount()-before)
	}
}

// BenchmarkDiffOneJoin is the Go side of one peer joining among 10,000
// into an existing identity (and leaving again, alternately): validation,
// the diff and the batch's encoding, against the fake kernel (no root).
func BenchmarkDiffOneJoin(b *testing.B) {
	k := newFakeKernel(b)
	k.light = true
	f := k.firewall(testConfig())
	if err := f.Install(); err != nil {
		b.Fatal(err)
	}
	e := meshState(10000, 5)
	j := joined(e, 10000, 3)
	if err := f.Apply(e); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		next := j
		if i%2 == 1 {
			next = e
		}
		if err := f.Apply(next); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFakeIncrementalValidation: after an Apply, only what differs from it
// is validated — yet every invalid state is still refused, nothing sent.
func TestFakeIncrementalValidation(t *testing.T) {
	k, f, e := fakeApplied(t, 100, 5)
	before := k.batchCount()
	for _, c := range []struct {
		name, err string
		mod       func(e *acl.Enforced)
	}{
		{"identity gone, its sources unchanged", "not listed", func(e *acl.Enforced) { e.Identities = e.Identities[:4] }},
		{"two sources swapped in the middle", "sorted", func(e *acl.Enforced) {
			e.Sources[50], e.Sources[51] = e.Sources[51], e.Sources[50]
		}},
		{"a source twice", "sorted", func(e *acl.Enforced) {
			e.Sources = slices.Insert(e.Sources, 60, e.Sources[60])
		}},
		{"a source moved to an unknown identity", "not listed", func(e *acl.Enforced) { e.Sources[70].ID = 9 }},
		{"a zoned address added", "plain", func(e *acl.Enforced) {
			e.Sources = append(e.Sources, src(netip.MustParseAddr("fe80::1%eth0"), 1))
		}},
	} {
		bad := meshState(100, 5)
		c.mod(&bad)
		if err := f.Apply(bad); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.err)
		}
	}
	if k.batchCount() != before {
		t.Fatalf("refused Applies sent %d batches", k.batchCount()-before)
	}
	// And what the Firewall knows is intact: a join is still one element
	// per family, not a rewrite from a re-read table.
	if err := f.Apply(joined(e, 100, 3)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(batchSummary(k.batch(before)), ", "); got != "add id_3_s4 1, add id_3_s6 1" {
		t.Fatalf("join after refusals: %s", got)
	}
}

func TestDispatchOrderMostSourcesFirst(t *testing.T) {
	e := meshState(0, 3)
	for i := range 5 {
		e.Sources = append(e.Sources, src(peer4(i), uint32(3-min(i, 2)))) // id 3: 1, id 2: 1, id 1: 3
	}
	slices.SortFunc(e.Sources, func(a, b acl.Source) int { return a.Addr.Compare(b.Addr) })
	want, err := desiredState(e)
	if err != nil {
		t.Fatal(err)
	}
	if got := dispatchOrder(want); !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Fatalf("order %v, want [1 2 3] (most sources first, ties by number)", got)
	}
}
