package acl

import (
	"net/netip"
	"slices"
)

// portMemo remembers the port elements of the last applied Desired, so that
// the next Apply converts, merges and diffs only the entries of the sources
// whose entries changed (a peer joining among 10,000 touches 18 of 180,000
// entries): the rest costs a comparison of the two inputs. It applies only when the last
// input was sorted by source (so every source's entries are contiguous and
// the elements of one source depend on those entries alone) with normalised
// sources; anything else takes the full build.
type portMemo struct {
	in       []PortElement // the last applied d.Ports (copy); nil: no memo
	old, new []PortElement // scratch of changed
	lo       int           // changed(ps) found ps[:lo] equal to in[:lo]
}

// cleanSrc reports whether a is used as it is in a key (no IPv4-mapped
// form, no zone), so that comparing inputs compares keys.
func cleanSrc(a netip.Addr) bool { return a.Is4() || (a.Is6() && !a.Is4In6() && a.Zone() == "") }

// remember keeps ps for the next call of changed, or forgets when ps does
// not qualify. sorted tells that changed(ps) just returned ok (ps is known
// to be sorted by clean source).
func (m *portMemo) remember(ps []PortElement, sorted bool) {
	for i := 0; !sorted && i < len(ps); i++ {
		if i > 0 && ps[i-1].Src == ps[i].Src {
			continue
		}
		if !cleanSrc(ps[i].Src) || (i > 0 && ps[i-1].Src.Compare(ps[i].Src) > 0) {
			m.in = nil
			return
		}
	}
	keep := 0
	if sorted {
		keep = min(m.lo, len(m.in), len(ps)) // ps[:m.lo] == m.in[:m.lo]
	}
	m.in = append(m.in[:keep], ps[keep:]...)
	if m.in == nil {
		m.in = []PortElement{}
	}
}

func (m *portMemo) forget() { m.in = nil }

// changed returns the entries of the sources whose entries differ between
// the remembered input and ps: old holds those of the remembered input,
// new those of ps (both sorted by source; the builder converts each into
// elements, and their difference is the difference of the whole inputs).
// ok is false when the memo cannot be used (nothing remembered, or ps not
// sorted by clean source). The returned slices are reused by the next call.
//
// The walk goes source by source, skipping runs of identical entries (and
// the sources they hold whole) with one comparison per entry: such entries
// are sorted by clean source as the remembered input was.
func (m *portMemo) changed(ps []PortElement) (old, new []PortElement, ok bool) {
	if m.in == nil {
		return nil, nil, false
	}
	prev := m.in
	old, new = m.old[:0], m.new[:0]
	m.lo = -1
	defer func() { m.old, m.new = old, new }()
	// boundary reports whether a source's entries end before x[p].
	boundary := func(x []PortElement, p int) bool { return p == len(x) || x[p-1].Src != x[p].Src }
	i, j := 0, 0
	for i < len(prev) || j < len(ps) {
		if j < len(ps) {
			src := ps[j].Src
			if !cleanSrc(src) || (j > 0 && ps[j-1].Src.Compare(src) >= 0) {
				return nil, nil, false // not sorted by source, or not a key as it is
			}
		}
		if i < len(prev) && j < len(ps) && prev[i] == ps[j] {
			k := 1
			for i+k < len(prev) && j+k < len(ps) && prev[i+k] == ps[j+k] {
				k++
			}
			for k > 0 && !(boundary(prev, i+k) && boundary(ps, j+k)) {
				k-- // back to the end of the last source held whole
			}
			if k > 0 {
				i, j = i+k, j+k
				continue
			}
		}
		if m.lo < 0 {
			m.lo = j // ps[:j] == prev[:j]
		}
		gi := i
		for gi < len(prev) && prev[gi].Src == prev[i].Src {
			gi++
		}
		gj := j
		for gj < len(ps) && ps[gj].Src == ps[j].Src {
			gj++
		}
		c := 0
		switch {
		case i == len(prev):
			c = 1
		case j == len(ps):
			c = -1
		default:
			c = prev[i].Src.Compare(ps[j].Src)
		}
		switch {
		case c == 0:
			if !slices.Equal(prev[i:gi], ps[j:gj]) {
				old, new = append(old, prev[i:gi]...), append(new, ps[j:gj]...)
			}
			i, j = gi, gj
		case c < 0:
			old = append(old, prev[i:gi]...)
			i = gi
		default:
			new = append(new, ps[j:gj]...)
			j = gj
		}
	}
	if m.lo < 0 {
		m.lo = len(ps)
	}
	return old, new, true
}

// applyDelta writes to dst (reused) the sorted list cur without dels and
// with adds (all sorted). ok is false when dels is not a subset of cur or
// adds meets cur (the memo did not describe cur).
func applyDelta(dst, cur, adds, dels []elem) (_ []elem, ok bool) {
	dst = slices.Grow(dst[:0], len(cur)+len(adds)-len(dels))
	i := 0
	for len(adds) > 0 || len(dels) > 0 {
		// The next change point in cur.
		var next elem
		isDel := len(dels) > 0 && (len(adds) == 0 || compareElem(dels[0], adds[0]) <= 0)
		if isDel {
			next = dels[0]
		} else {
			next = adds[0]
		}
		j, found := slices.BinarySearchFunc(cur[i:], next, compareElem)
		if found != isDel {
			return dst, false
		}
		dst = append(dst, cur[i:i+j]...)
		i += j
		if isDel {
			i++ // cur[i] == dels[0]
			dels = dels[1:]
		} else {
			dst = append(dst, next)
			adds = adds[1:]
		}
	}
	return append(dst, cur[i:]...), true
}
