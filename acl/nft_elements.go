package acl

import (
	"bytes"
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
)

// maxKeyLen is the longest key of our sets: ipv6_addr . inet_proto .
// inet_service = 16 + 4 + 4 bytes.
const maxKeyLen = 24

// elem is one set element in its kernel encoding: the key and, in the
// interval sets, the (inclusive) key end. Unused bytes are zero, so elements
// of one set compare and sort by their bytes, which for port elements is the
// order (source, protocol, low port).
type elem struct {
	key, end [maxKeyLen]byte
	n        uint8 // key length
	interval bool  // end is meaningful
}

func compareElem(a, b elem) int {
	return cmp.Or(bytes.Compare(a.key[:], b.key[:]), bytes.Compare(a.end[:], b.end[:]))
}

func (e elem) setElement() nftables.SetElement {
	se := nftables.SetElement{Key: bytes.Clone(e.key[:e.n])}
	if e.interval {
		se.KeyEnd = bytes.Clone(e.end[:e.n])
	}
	return se
}

// elemFromKernel converts an element read from the kernel. Elements of the
// interval sets always carry a key end (a kernel that leaves it out for a
// single value gets key end = key).
func elemFromKernel(set *nftables.Set, se nftables.SetElement) (elem, error) {
	var e elem
	if len(se.Key) == 0 || len(se.Key) > maxKeyLen {
		return e, fmt.Errorf("set %s: element key of %d bytes", set.Name, len(se.Key))
	}
	e.n = uint8(len(se.Key))
	copy(e.key[:], se.Key)
	if set.Interval {
		e.interval = true
		end := se.KeyEnd
		if len(end) == 0 {
			end = se.Key
		}
		if len(end) != len(se.Key) {
			return e, fmt.Errorf("set %s: key end of %d bytes for a key of %d", set.Name, len(end), len(se.Key))
		}
		copy(e.end[:], end)
	}
	return e, nil
}

func addrElem(a netip.Addr) elem {
	var e elem
	b := a.As16()
	if a.Is4() {
		e.n = 4
		copy(e.key[:], b[12:])
	} else {
		e.n = 16
		copy(e.key[:], b[:])
	}
	return e
}

// portElem encodes p for the concatenated interval set allow4/allow6. Every
// field of a concatenation takes a whole number of 4-byte registers:
//
//	address (4 or 16 bytes) . protocol (1 byte + 3 zero) . port (2 bytes big endian + 2 zero)
//
// key holds the low end of the port range and end the high end, inclusive
// (NFTA_SET_ELEM_KEY_END, as nft writes `a . tcp . 80-90`); a single port has
// end == key.
func portElem(p PortElement) elem {
	e := addrElem(p.Src)
	n := e.n
	e.n += 8
	e.interval = true
	e.end = e.key
	e.key[n], e.end[n] = p.Proto, p.Proto
	e.key[n+4], e.key[n+5] = byte(p.PortLo>>8), byte(p.PortLo)
	e.end[n+4], e.end[n+5] = byte(p.PortHi>>8), byte(p.PortHi)
	return e
}

// elementSet is the content of the sets of table inet segmesh: set name ->
// elements, sorted by compareElem and without duplicates.
type elementSet map[string][]elem

// len returns the number of elements in all sets.
func (s elementSet) len() int {
	n := 0
	for _, l := range s {
		n += len(l)
	}
	return n
}

// portProtos are the protocols whose transport header starts with source and
// destination ports (`th dport` reads bytes 2-3): TCP, UDP, DCCP, SCTP,
// UDP-Lite.
var portProtos = map[uint8]bool{ProtoTCP: true, ProtoUDP: true, 33: true, 132: true, 136: true}

// desiredElements converts d into set elements. Port elements of the same
// source and protocol are merged where they overlap or touch, so the
// interval sets never receive overlapping elements (the kernel would refuse
// them). Duplicates are harmless.
func desiredElements(d Desired) (elementSet, error) {
	out := make(elementSet, len(setNames))
	for _, group := range []struct {
		addrs    []netip.Addr
		set4, s6 string
		what     string
	}{
		{d.Local, setLocal4, setLocal6, "local address"},
		{d.ICMP, setICMP4, setICMP6, "icmp source"},
		{d.Any, setAny4, setAny6, "any source"},
	} {
		for _, a := range group.addrs {
			a, err := normAddr(a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", group.what, err)
			}
			set := group.s6
			if a.Is4() {
				set = group.set4
			}
			out[set] = append(out[set], addrElem(a))
		}
	}
	ports, err := mergePorts(d.Ports)
	if err != nil {
		return nil, err
	}
	n4 := 0
	for _, p := range ports {
		if p.Src.Is4() {
			n4++
		}
	}
	out[setAllow4] = make([]elem, 0, n4)
	out[setAllow6] = make([]elem, 0, len(ports)-n4)
	for _, p := range ports {
		set := setAllow6
		if p.Src.Is4() {
			set = setAllow4
		}
		out[set] = append(out[set], portElem(p))
	}
	for name, l := range out {
		if !slices.IsSortedFunc(l, compareElem) {
			slices.SortFunc(l, compareElem)
		}
		out[name] = slices.Compact(l)
	}
	return out, nil
}

func normAddr(a netip.Addr) (netip.Addr, error) {
	if !a.IsValid() {
		return a, fmt.Errorf("invalid address")
	}
	return a.Unmap().WithZone(""), nil
}

func comparePorts(a, b PortElement) int {
	return cmp.Or(a.Src.Compare(b.Src), cmp.Compare(a.Proto, b.Proto),
		cmp.Compare(a.PortLo, b.PortLo), cmp.Compare(a.PortHi, b.PortHi))
}

// mergePorts validates ps, normalises the sources and merges overlapping or
// adjacent ranges of the same source and protocol. The result is sorted.
func mergePorts(ps []PortElement) ([]PortElement, error) {
	all := make([]PortElement, 0, len(ps))
	for _, p := range ps {
		src, err := normAddr(p.Src)
		if err != nil {
			return nil, fmt.Errorf("port element %v: %w", p, err)
		}
		if !portProtos[p.Proto] {
			return nil, fmt.Errorf("port element %v: protocol %d has no ports", p, p.Proto)
		}
		if p.PortLo > p.PortHi {
			return nil, fmt.Errorf("port element %v: port range %d-%d is reversed", p, p.PortLo, p.PortHi)
		}
		p.Src = src
		all = append(all, p)
	}
	if !slices.IsSortedFunc(all, comparePorts) { // the compiler's output is sorted
		slices.SortFunc(all, comparePorts)
	}
	out := all[:0]
	for _, p := range all {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.Src == p.Src && last.Proto == p.Proto && uint32(p.PortLo) <= uint32(last.PortHi)+1 {
				last.PortHi = max(last.PortHi, p.PortHi)
				continue
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// diffElems returns the elements of want missing from cur (adds) and those of
// cur missing from want (dels); both inputs are sorted and compacted.
func diffElems(cur, want []elem) (adds, dels []elem) {
	i, j := 0, 0
	for i < len(cur) || j < len(want) {
		switch {
		case i == len(cur):
			adds = append(adds, want[j])
			j++
		case j == len(want):
			dels = append(dels, cur[i])
			i++
		default:
			switch c := compareElem(cur[i], want[j]); {
			case c == 0:
				i++
				j++
			case c < 0:
				dels = append(dels, cur[i])
				i++
			default:
				adds = append(adds, want[j])
				j++
			}
		}
	}
	return adds, dels
}

func setElements(l []elem) []nftables.SetElement {
	out := make([]nftables.SetElement, len(l))
	for i, e := range l {
		out[i] = e.setElement()
	}
	return out
}

// describeElement renders an element of set for logs and tests, e.g.
// "100.80.0.2 . 6 . 80-90" or "fd5e::1".
func describeElement(set string, e nftables.SetElement) string {
	addr := func(b []byte) string {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return fmt.Sprintf("%x", b)
		}
		return a.String()
	}
	if set != setAllow4 && set != setAllow6 {
		return addr(e.Key)
	}
	n := len(e.Key) - 8
	if n != 4 && n != 16 || len(e.KeyEnd) != len(e.Key) {
		return fmt.Sprintf("%x-%x", e.Key, e.KeyEnd)
	}
	port := func(k []byte) uint16 { return uint16(k[n+4])<<8 | uint16(k[n+5]) }
	lo, hi := port(e.Key), port(e.KeyEnd)
	var b strings.Builder
	fmt.Fprintf(&b, "%s . %d . %d", addr(e.Key[:n]), e.Key[n], lo)
	if hi != lo {
		fmt.Fprintf(&b, "-%d", hi)
	}
	return b.String()
}
