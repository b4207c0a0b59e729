package acl

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
)

// elem is one element of a managed set in a compact, comparable form: the
// address as two 64-bit halves (IPv4 as ::ffff:a.b.c.d), and for the port
// sets the protocol and the inclusive port range (a single port in the
// exact-port sets allow4/allow6). Which encoding it gets on the wire depends
// on the set (see setKind). Elements of one set sort by (address, protocol,
// low port, high port).
type elem struct {
	hi, lo         uint64
	portLo, portHi uint16
	proto          uint8
}

func compareElem(a, b elem) int {
	if a.hi != b.hi {
		return cmp.Compare(a.hi, b.hi)
	}
	if a.lo != b.lo {
		return cmp.Compare(a.lo, b.lo)
	}
	if a.proto != b.proto {
		return cmp.Compare(a.proto, b.proto)
	}
	if a.portLo != b.portLo {
		return cmp.Compare(a.portLo, b.portLo)
	}
	return cmp.Compare(a.portHi, b.portHi)
}

// v4mapped is the upper half of lo for an IPv4 address (::ffff:0:0/96).
const v4mapped = 0xffff << 32

func addrElem(a netip.Addr) elem {
	b := a.As16()
	return elem{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

// setKind describes how the elements of a managed set are encoded.
type setKind struct {
	v4       bool // IPv4 addresses (4 bytes), else IPv6 (16)
	ports    bool // address . protocol . port concatenation
	interval bool // key end carried (the range sets)
}

// kinds gives the kind of every logical managed set, indexed like setNames.
var kinds = func() [numSets]setKind {
	var k [numSets]setKind
	for i := range numSets {
		switch i {
		case sLocal4, sICMP4, sAny4:
			k[i] = setKind{v4: true}
		case sAllow4:
			k[i] = setKind{v4: true, ports: true}
		case sAllow6:
			k[i] = setKind{ports: true}
		case sAllow4R:
			k[i] = setKind{v4: true, ports: true, interval: true}
		case sAllow6R:
			k[i] = setKind{ports: true, interval: true}
		}
	}
	return k
}()

// keyLen is the length of the set's key: every field of a concatenation
// takes a whole number of 4-byte registers:
//
//	address (4 or 16 bytes) . protocol (1 byte + 3 zero) . port (2 bytes big endian + 2 zero)
func (k setKind) keyLen() int {
	n := 16
	if k.v4 {
		n = 4
	}
	if k.ports {
		n += 8
	}
	return n
}

// putKey writes e's key (port = the low port, or the high one when end) to
// b, which is keyLen bytes long and zeroed.
func (k setKind) putKey(b []byte, e elem, end bool) {
	n := 4
	if k.v4 {
		binary.BigEndian.PutUint32(b, uint32(e.lo))
	} else {
		binary.BigEndian.PutUint64(b, e.hi)
		binary.BigEndian.PutUint64(b[8:], e.lo)
		n = 16
	}
	if !k.ports {
		return
	}
	port := e.portLo
	if end {
		port = e.portHi
	}
	b[n] = e.proto
	binary.BigEndian.PutUint16(b[n+4:], port)
}

// elemFromKernel decodes an element of a set of kind k read from the kernel.
// Elements of the interval sets always carry a key end (a kernel that leaves
// it out for a single value gets key end = key). An element that our encoding
// cannot represent (other lengths, non-zero padding, a key end of another
// address or protocol) is an error: the table was written by someone else.
func (k setKind) elemFromKernel(name string, se nftables.SetElement) (elem, error) {
	bad := func(why string) (elem, error) {
		return elem{}, fmt.Errorf("set %s: element %x-%x: %s; Install again", name, se.Key, se.KeyEnd, why)
	}
	n := k.keyLen()
	if len(se.Key) != n {
		return bad(fmt.Sprintf("key of %d bytes, want %d", len(se.Key), n))
	}
	e, lo := decodeKey(k, se.Key)
	if k.ports {
		e.portLo, e.portHi = lo, lo
	}
	if !k.interval {
		if len(se.KeyEnd) != 0 && string(se.KeyEnd) != string(se.Key) {
			return bad("key end in a set without intervals")
		}
	} else if len(se.KeyEnd) != 0 {
		if len(se.KeyEnd) != n {
			return bad(fmt.Sprintf("key end of %d bytes", len(se.KeyEnd)))
		}
		end, hi := decodeKey(k, se.KeyEnd)
		if end.hi != e.hi || end.lo != e.lo || end.proto != e.proto || hi < lo {
			return bad("key end is not a port range of the same address and protocol")
		}
		e.portHi = hi
	}
	var check [2 * 24]byte
	k.putKey(check[:n], e, false)
	if string(check[:n]) != string(se.Key) {
		return bad("non-zero padding")
	}
	return e, nil
}

func decodeKey(k setKind, b []byte) (elem, uint16) {
	var e elem
	n := 4
	if k.v4 {
		e.lo = v4mapped | uint64(binary.BigEndian.Uint32(b))
	} else {
		e.hi, e.lo = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
		n = 16
	}
	if !k.ports {
		return e, 0
	}
	e.proto = b[n]
	return e, binary.BigEndian.Uint16(b[n+4:])
}

// portSets are the indices of the port sets.
var portSets = [...]int{sAllow4, sAllow6, sAllow4R, sAllow6R}

// elementSet is the content of the managed sets of table inet segmesh,
// indexed like setNames; each list sorted by compareElem, without
// duplicates.
type elementSet [numSets][]elem

// len returns the number of elements in all sets.
func (s *elementSet) len() int {
	n := 0
	for _, l := range s {
		n += len(l)
	}
	return n
}

// isPortProto reports whether the protocol's transport header starts with
// source and destination ports (`th dport` reads bytes 2-3): TCP, UDP,
// DCCP, SCTP, UDP-Lite.
func isPortProto(p uint8) bool {
	switch p {
	case ProtoTCP, ProtoUDP, 33, 132, 136:
		return true
	}
	return false
}

// elemBuilder converts a Desired into an elementSet, reusing its buffers
// from one call to the next (Apply keeps one; a Desired of 200,000 elements
// then costs no allocation). Not safe for concurrent use.
type elemBuilder struct {
	p4, p6   []elem // port elements by family, before merging
	old, new elementSet
}

// build fills out (its slices are truncated and reused) from d. Port
// elements of the same source and protocol are merged where they overlap or
// touch, so the interval sets never receive overlapping elements (the kernel
// would refuse them); a merged element covering one port goes to the
// exact-port set, a wider one to the range set. Inputs sorted like the
// compiler's output are not sorted again. Duplicates are harmless.
func (b *elemBuilder) build(d Desired, out *elementSet) error {
	if err := b.addrs(d, out); err != nil {
		return err
	}
	return b.ports(d.Ports, out)
}

// addrs empties the sets of out and fills the address sets (local, icmp,
// any) from d.
func (b *elemBuilder) addrs(d Desired, out *elementSet) error {
	for i := range out {
		out[i] = out[i][:0]
	}
	for _, g := range []struct {
		addrs  []netip.Addr
		s4, s6 int
		what   string
	}{
		{d.Local, sLocal4, sLocal6, "local address"},
		{d.ICMP, sICMP4, sICMP6, "icmp source"},
		{d.Any, sAny4, sAny6, "any source"},
	} {
		for _, a := range g.addrs {
			if !a.IsValid() {
				return fmt.Errorf("%s: invalid address", g.what)
			}
			// addrElem maps IPv4 as ::ffff:a.b.c.d and drops any zone.
			set := g.s6
			if a.Is4() || a.Is4In6() {
				set = g.s4
			}
			out[set] = append(out[set], addrElem(a))
		}
		sortCompact(&out[g.s4])
		sortCompact(&out[g.s6])
	}
	return nil
}

// ports appends the port elements of ps to the port sets of out (which
// must not hold elements of other sources).
func (b *elemBuilder) ports(ps []PortElement, out *elementSet) error {
	p4, p6 := b.p4[:0], b.p6[:0]
	sorted4, sorted6 := true, true
	for _, p := range ps {
		src := p.Src
		if !src.IsValid() || !isPortProto(p.Proto) || p.PortLo > p.PortHi {
			return portError(p)
		}
		if src.Is4In6() {
			src = src.Unmap()
		}
		e := addrElem(src) // zones are dropped: the key has none
		e.proto, e.portLo, e.portHi = p.Proto, p.PortLo, p.PortHi
		if src.Is4() {
			if n := len(p4); n > 0 && sorted4 && compareElem(p4[n-1], e) > 0 {
				sorted4 = false
			}
			p4 = append(p4, e)
		} else {
			if n := len(p6); n > 0 && sorted6 && compareElem(p6[n-1], e) > 0 {
				sorted6 = false
			}
			p6 = append(p6, e)
		}
	}
	b.p4, b.p6 = p4, p6
	if !sorted4 {
		slices.SortFunc(p4, compareElem)
	}
	if !sorted6 {
		slices.SortFunc(p6, compareElem)
	}
	out[sAllow4], out[sAllow4R] = mergeInto(p4, out[sAllow4], out[sAllow4R])
	out[sAllow6], out[sAllow6R] = mergeInto(p6, out[sAllow6], out[sAllow6R])
	return nil
}

func portError(p PortElement) error {
	switch {
	case !p.Src.IsValid():
		return fmt.Errorf("port element %v: invalid address", p)
	case !isPortProto(p.Proto):
		return fmt.Errorf("port element %v: protocol %d has no ports", p, p.Proto)
	default:
		return fmt.Errorf("port element %v: port range %d-%d is reversed", p, p.PortLo, p.PortHi)
	}
}

// sortCompact sorts *l unless it is sorted and removes duplicates.
func sortCompact(l *[]elem) {
	if strictlySorted(*l) {
		return
	}
	slices.SortFunc(*l, compareElem)
	*l = slices.Compact(*l)
}

// strictlySorted reports whether l is sorted by compareElem without
// duplicates (the usual input: a quick pass instead of a sort).
func strictlySorted(l []elem) bool {
	for i := 1; i < len(l); i++ {
		a, b := &l[i-1], &l[i]
		if a.hi != b.hi {
			if a.hi > b.hi {
				return false
			}
			continue
		}
		if a.lo != b.lo {
			if a.lo > b.lo {
				return false
			}
			continue
		}
		if compareElem(*a, *b) >= 0 {
			return false
		}
	}
	return true
}

// mergeInto merges the overlapping or adjacent ranges of the same source
// and protocol in ps (sorted) and appends each result to exact (one port)
// or ranges.
func mergeInto(ps, exact, ranges []elem) ([]elem, []elem) {
	if len(ps) == 0 {
		return exact, ranges
	}
	cur := ps[0]
	for _, p := range ps[1:] {
		if p.hi == cur.hi && p.lo == cur.lo && p.proto == cur.proto && uint32(p.portLo) <= uint32(cur.portHi)+1 {
			cur.portHi = max(cur.portHi, p.portHi)
			continue
		}
		if cur.portLo == cur.portHi {
			exact = append(exact, cur)
		} else {
			ranges = append(ranges, cur)
		}
		cur = p
	}
	if cur.portLo == cur.portHi {
		exact = append(exact, cur)
	} else {
		ranges = append(ranges, cur)
	}
	return exact, ranges
}

// desiredElements converts d into set elements (see elemBuilder.build).
func desiredElements(d Desired) (*elementSet, error) {
	var b elemBuilder
	out := new(elementSet)
	if err := b.build(d, out); err != nil {
		return nil, err
	}
	return out, nil
}

// diffElems appends to adds the elements of want missing from cur and to
// dels those of cur missing from want; both inputs are sorted and compacted.
func diffElems(cur, want, adds, dels []elem) ([]elem, []elem) {
	i, j := 0, 0
	for i < len(cur) && j < len(want) {
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
	dels = append(dels, cur[i:]...)
	adds = append(adds, want[j:]...)
	return adds, dels
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
	i, ok := logicalSet[set]
	if !ok || !kinds[i].ports {
		return addr(e.Key)
	}
	n := len(e.Key) - 8
	end := e.KeyEnd
	if len(end) == 0 {
		end = e.Key
	}
	if n != 4 && n != 16 || len(end) != len(e.Key) {
		return fmt.Sprintf("%x-%x", e.Key, e.KeyEnd)
	}
	port := func(k []byte) uint16 { return binary.BigEndian.Uint16(k[n+4:]) }
	lo, hi := port(e.Key), port(end)
	var b strings.Builder
	fmt.Fprintf(&b, "%s . %d . %d", addr(e.Key[:n]), e.Key[n], lo)
	if hi != lo {
		fmt.Fprintf(&b, "-%d", hi)
	}
	return b.String()
}
