package acl

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
)

func TestPortElementEncoding(t *testing.T) {
	for _, c := range []struct {
		p        PortElement
		key, end string
	}{
		{PortElement{peerA4, ProtoTCP, 80, 90}, "64500003 06000000 00500000", "64500003 06000000 005a0000"},
		{PortElement{peerA4, ProtoUDP, 53, 53}, "64500003 11000000 00350000", ""}, // exact-port set: no key end
		{PortElement{netip.MustParseAddr("::ffff:100.80.0.3"), ProtoTCP, 0, 65535}, "64500003 06000000 00000000", "64500003 06000000 ffff0000"},
		{PortElement{peerA6, ProtoTCP, 443, 443}, "fd5e6d00 00000000 00000000 00000003 06000000 01bb0000", ""},
		{PortElement{peerA6, ProtoUDP, 443, 444},
			"fd5e6d00 00000000 00000000 00000003 11000000 01bb0000", "fd5e6d00 00000000 00000000 00000003 11000000 01bc0000"},
	} {
		d, err := desiredElements(Desired{Ports: []PortElement{c.p}})
		if err != nil {
			t.Fatal(err)
		}
		var se []nftables.SetElement
		for i, l := range d {
			se = append(se, kinds[i].setElements(l)...)
		}
		if len(se) != 1 {
			t.Fatalf("%v: %d elements", c.p, len(se))
		}
		key, end := hexWords(se[0].Key), hexWords(se[0].KeyEnd)
		if key != c.key || end != c.end {
			t.Errorf("%v: key %s end %s, want %s / %s", c.p, key, end, c.key, c.end)
		}
	}
}

func hexWords(b []byte) string {
	var w []string
	for c := range slices.Chunk(b, 4) {
		w = append(w, fmt.Sprintf("%x", c))
	}
	return strings.Join(w, " ")
}

func TestDesiredElementsMergesPortRanges(t *testing.T) {
	d, err := desiredElements(Desired{Ports: []PortElement{
		{peerA4, ProtoTCP, 100, 200}, {peerA4, ProtoTCP, 150, 300}, {peerA4, ProtoTCP, 301, 310}, // overlap, adjacent
		{peerA4, ProtoTCP, 400, 400}, {peerA4, ProtoUDP, 100, 400}, {peerB4, ProtoTCP, 100, 200},
		{peerA4, ProtoTCP, 65535, 65535}, {peerA4, ProtoTCP, 1000, 65535},
	}})
	if err != nil {
		t.Fatal(err)
	}
	describe := func(i int) []string {
		var out []string
		for _, e := range kinds[i].setElements(d[i]) {
			out = append(out, describeElement(setNames[i], e))
		}
		return out
	}
	// Single ports go to the exact-port set, ranges to the range set; a
	// merge that widens a single port moves it to the range set.
	wantLines(t, "merged ranges", describe(sAllow4R), []string{
		"100.80.0.3 . 6 . 100-310", "100.80.0.3 . 6 . 1000-65535",
		"100.80.0.3 . 17 . 100-400", "100.80.0.4 . 6 . 100-200",
	})
	wantLines(t, "merged single ports", describe(sAllow4), []string{"100.80.0.3 . 6 . 400"})
	d, err = desiredElements(Desired{Ports: []PortElement{{peerA4, ProtoTCP, 22, 22}, {peerA4, ProtoTCP, 23, 23}, {peerA4, ProtoTCP, 25, 25}}})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, "adjacent single ports", describe(sAllow4R), []string{"100.80.0.3 . 6 . 22-23"})
	wantLines(t, "lone single port", describe(sAllow4), []string{"100.80.0.3 . 6 . 25"})
}

// TestDesiredElementsUnsortedInput: the same elements in any order (and
// with duplicates) give the same sets as the sorted input.
func TestDesiredElementsUnsortedInput(t *testing.T) {
	d := benchDesired(50)
	want, err := desiredElements(d)
	if err != nil {
		t.Fatal(err)
	}
	shuffled := d
	shuffled.Ports = append(slices.Clone(d.Ports), d.Ports[:7]...)
	slices.Reverse(shuffled.Ports)
	shuffled.ICMP = append(slices.Clone(d.ICMP), d.ICMP[3])
	slices.Reverse(shuffled.ICMP)
	got, err := desiredElements(shuffled)
	if err != nil {
		t.Fatal(err)
	}
	if !equalSets(got, want) {
		t.Errorf("unsorted input gives other sets")
	}
	if want.len() != 50*2*(9+1)+2 {
		t.Errorf("%d elements", want.len())
	}
}

func equalSets(a, b *elementSet) bool {
	for i := range a {
		if !slices.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestDiffElems(t *testing.T) {
	e := func(b byte) elem { return elem{lo: uint64(b)} }
	adds, dels := diffElems([]elem{e(1), e(2), e(4)}, []elem{e(2), e(3), e(4), e(5)}, nil, nil)
	if !slices.Equal(adds, []elem{e(3), e(5)}) || !slices.Equal(dels, []elem{e(1)}) {
		t.Errorf("adds %v dels %v", adds, dels)
	}
}

func TestElemFromKernel(t *testing.T) {
	key := []byte{1, 2, 3, 4, 6, 0, 0, 0, 0, 80, 0, 0}
	e, err := kinds[sAllow4R].elemFromKernel(setAllow4R, nftables.SetElement{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if se := kinds[sAllow4R].setElements([]elem{e})[0]; !bytes.Equal(se.Key, key) || !bytes.Equal(se.KeyEnd, key) {
		t.Errorf("single interval element without key end: %x - %x", se.Key, se.KeyEnd)
	}
	end := []byte{1, 2, 3, 4, 6, 0, 0, 0, 0, 90, 0, 0}
	e, err = kinds[sAllow4R].elemFromKernel(setAllow4R, nftables.SetElement{Key: key, KeyEnd: end})
	if err != nil || e.portLo != 80 || e.portHi != 90 {
		t.Errorf("range element: %+v, %v", e, err)
	}
	e, err = kinds[sAllow4].elemFromKernel(setAllow4, nftables.SetElement{Key: key})
	if err != nil || e.portLo != 80 || e.portHi != 80 {
		t.Errorf("exact element: %+v, %v", e, err)
	}
	for name, c := range map[string]struct {
		set int
		se  nftables.SetElement
	}{
		"30-byte key":           {sAny4, nftables.SetElement{Key: make([]byte, 30)}},
		"ipv6 key in ipv4 set":  {sAny4, nftables.SetElement{Key: make([]byte, 16)}},
		"non-zero padding":      {sAllow4, nftables.SetElement{Key: []byte{1, 2, 3, 4, 6, 1, 0, 0, 0, 80, 0, 0}}},
		"range of two sources":  {sAllow4R, nftables.SetElement{Key: key, KeyEnd: []byte{1, 2, 3, 5, 6, 0, 0, 0, 0, 90, 0, 0}}},
		"reversed range":        {sAllow4R, nftables.SetElement{Key: end, KeyEnd: key}},
		"range in an exact set": {sAllow4, nftables.SetElement{Key: key, KeyEnd: end}},
	} {
		if _, err := kinds[c.set].elemFromKernel(setNames[c.set], c.se); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// setElements encodes l for a set of kind k as library elements (tests
// compare and describe elements in this form).
func (k setKind) setElements(l []elem) []nftables.SetElement {
	n := k.keyLen()
	out := make([]nftables.SetElement, len(l))
	for i, e := range l {
		out[i].Key = make([]byte, n)
		k.putKey(out[i].Key, e, false)
		if k.interval {
			out[i].KeyEnd = make([]byte, n)
			k.putKey(out[i].KeyEnd, e, true)
		}
	}
	return out
}
