package acl

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestApplyIncrementalMatchesFullBuild applies random sequences of port
// inputs (mostly sorted by source like the compiler's output, sometimes
// not, with overlapping and adjacent ranges, IPv4-mapped sources) and checks
// after each Apply that the state the Firewall keeps and the kernel's sets
// equal a full build of the input, and that the batch held exactly the
// difference.
func TestApplyIncrementalMatchesFullBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	srcs := []netip.Addr{peerA4, peerB4, peerA6, peerB6, peer4(7), peer6(7), peer4(300), peer6(300)}
	randPort := func() PortElement {
		p := PortElement{Src: srcs[rng.IntN(len(srcs))], Proto: []uint8{ProtoTCP, ProtoUDP}[rng.IntN(2)]}
		p.PortLo = uint16(rng.IntN(40))
		p.PortHi = p.PortLo
		if rng.IntN(3) == 0 {
			p.PortHi += uint16(rng.IntN(6))
		}
		return p
	}
	sortPorts := func(ps []PortElement) {
		slices.SortFunc(ps, func(a, b PortElement) int {
			return cmp.Or(a.Src.Compare(b.Src), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.PortLo, b.PortLo), cmp.Compare(a.PortHi, b.PortHi))
		})
	}
	for run := range 40 {
		k := newFakeKernel(t)
		f := installed(t, k)
		var ports []PortElement
		prev := new(elementSet)
		for step := range 30 {
			ports = slices.Clone(ports)
			switch op := rng.IntN(6); {
			case op <= 1 || len(ports) == 0: // insert a few
				for range 1 + rng.IntN(4) {
					ports = append(ports, randPort())
				}
			case op == 2: // delete a few
				for range 1 + rng.IntN(3) {
					if len(ports) > 0 {
						i := rng.IntN(len(ports))
						ports = slices.Delete(ports, i, i+1)
					}
				}
			case op == 3: // change one
				ports[rng.IntN(len(ports))] = randPort()
			case op == 4: // drop a whole source
				src := ports[rng.IntN(len(ports))].Src
				ports = slices.DeleteFunc(ports, func(p PortElement) bool { return p.Src == src })
			default: // a mapped source or a duplicate
				p := ports[rng.IntN(len(ports))]
				if p.Src.Is4() && rng.IntN(2) == 0 {
					p.Src = netip.AddrFrom16(p.Src.As16())
				}
				ports = append(ports, p)
			}
			if rng.IntN(5) != 0 {
				sortPorts(ports)
			}
			d := Desired{Local: []netip.Addr{self4, self6}, Ports: ports}
			if err := f.Apply(d); err != nil {
				t.Fatalf("run %d step %d: %v", run, step, err)
			}
			want, err := desiredElements(d)
			if err != nil {
				t.Fatal(err)
			}
			if !equalSets(f.cur, want) {
				t.Fatalf("run %d step %d: kept state differs from a full build\ninput %v\ngot  %v\nwant %v", run, step, ports, f.cur, want)
			}
			for _, i := range portSets {
				var exp []string
				for _, e := range kinds[i].setElements(want[i]) {
					exp = append(exp, describeElement(setNames[i], e))
				}
				slices.Sort(exp)
				if got := k.elements(setNames[i]); !slices.Equal(got, exp) {
					t.Fatalf("run %d step %d: kernel set %s = %v, want %v", run, step, setNames[i], got, exp)
				}
			}
			adds, dels := 0, 0
			for i := range want {
				a, d := diffElems(prev[i], want[i], nil, nil)
				adds, dels = adds+len(a), dels+len(d)
			}
			if f.last.Adds != adds || f.last.Dels != dels {
				if adds+dels > 0 || step == 0 {
					t.Fatalf("run %d step %d: batch +%d -%d, want +%d -%d", run, step, f.last.Adds, f.last.Dels, adds, dels)
				}
			}
			prev = want
		}
	}
}

func TestApplyDelta(t *testing.T) {
	e := func(b byte) elem { return elem{lo: uint64(b)} }
	cur := []elem{e(2), e(4), e(6), e(8)}
	got, ok := applyDelta(nil, cur, []elem{e(1), e(5), e(9)}, []elem{e(4), e(8)})
	if !ok || !slices.Equal(got, []elem{e(1), e(2), e(5), e(6), e(9)}) {
		t.Errorf("applyDelta = %v, %v", got, ok)
	}
	if _, ok := applyDelta(nil, cur, nil, []elem{e(3)}); ok {
		t.Error("deleting a missing element succeeded")
	}
	if _, ok := applyDelta(nil, cur, []elem{e(6)}, nil); ok {
		t.Error("adding a present element succeeded")
	}
}
