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
		{PortElement{peerA4, ProtoUDP, 53, 53}, "64500003 11000000 00350000", "64500003 11000000 00350000"},
		{PortElement{netip.MustParseAddr("::ffff:100.80.0.3"), ProtoTCP, 0, 65535}, "64500003 06000000 00000000", "64500003 06000000 ffff0000"},
		{PortElement{peerA6, ProtoTCP, 443, 443},
			"fd5e6d00 00000000 00000000 00000003 06000000 01bb0000", "fd5e6d00 00000000 00000000 00000003 06000000 01bb0000"},
	} {
		d, err := desiredElements(Desired{Ports: []PortElement{c.p}})
		if err != nil {
			t.Fatal(err)
		}
		var se []nftables.SetElement
		for _, l := range d {
			se = append(se, setElements(l)...)
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
	var got []string
	for _, e := range setElements(d[setAllow4]) {
		got = append(got, describeElement(setAllow4, e))
	}
	wantLines(t, "merged", got, []string{
		"100.80.0.3 . 6 . 100-310", "100.80.0.3 . 6 . 400", "100.80.0.3 . 6 . 1000-65535",
		"100.80.0.3 . 17 . 100-400", "100.80.0.4 . 6 . 100-200",
	})
}

func TestDiffElems(t *testing.T) {
	e := func(b byte) elem { var x elem; x.n = 1; x.key[0] = b; return x }
	adds, dels := diffElems([]elem{e(1), e(2), e(4)}, []elem{e(2), e(3), e(4), e(5)})
	if !slices.Equal(adds, []elem{e(3), e(5)}) || !slices.Equal(dels, []elem{e(1)}) {
		t.Errorf("adds %v dels %v", adds, dels)
	}
}

func TestElemFromKernel(t *testing.T) {
	lay := newLayout()
	e, err := elemFromKernel(lay.sets[setAllow4], nftables.SetElement{Key: []byte{1, 2, 3, 4, 6, 0, 0, 0, 0, 80, 0, 0}})
	if err != nil {
		t.Fatal(err)
	}
	if se := e.setElement(); !bytes.Equal(se.Key, se.KeyEnd) {
		t.Errorf("single interval element without key end: %x - %x", se.Key, se.KeyEnd)
	}
	if _, err := elemFromKernel(lay.sets[setAny4], nftables.SetElement{Key: make([]byte, 30)}); err == nil {
		t.Error("accepted a 30-byte key")
	}
}
