package nft

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/segmesh/segmesh/acl"
)

// content is what the chain and sets of one identity hold.
type content struct {
	any, icmp bool
	tcp, udp  []acl.PortRange
}

func (c *content) equal(o *content) bool {
	return c != nil && o != nil && c.any == o.any && c.icmp == o.icmp &&
		slices.Equal(c.tcp, o.tcp) && slices.Equal(c.udp, o.udp)
}

// state is the table's managed content: what Apply writes.
type state struct {
	local [2][]netip.Addr     // local4, local6 (sorted)
	src   []acl.Source        // the identities' source sets, strictly sorted by address
	nsrc  [2]int              // sources per family (set by sourceDiff and refresh)
	stray []acl.Source        // read from the kernel: addresses also in another identity's set, to delete
	ids   map[uint32]*content // identity chains; nil content: read from the kernel and not as Apply writes it
	// order is the identities in the dispatch chains src4/src6, in rule
	// order; nil when not known (read from the kernel): rewritten then.
	order []uint32
	audit bool
}

// fam returns the family index of a: 0 IPv4, 1 IPv6.
func fam(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// desiredState validates e's identities and local addresses and converts
// e; its sources are validated by sourceDiff, which only checks what
// differs from the current state. It refuses what the table cannot hold
// (see IdentityCapacity, PortCapacity) with an error wrapping ErrCapacity.
// The state keeps e.Sources (not copied: at 100,000 peers a copy costs
// more than the kernel's work for a join).
func desiredState(e acl.Enforced) (state, error) {
	s := state{src: e.Sources, ids: make(map[uint32]*content, len(e.Identities)), audit: e.Audit}
	if len(e.Identities) > IdentityCapacity {
		return state{}, fmt.Errorf("%w: %d identities, at most %d", ErrCapacity, len(e.Identities), IdentityCapacity)
	}
	for _, id := range e.Identities {
		if id.ID == 0 {
			return state{}, fmt.Errorf("identity number 0")
		}
		if s.ids[id.ID] != nil {
			return state{}, fmt.Errorf("identity %d listed twice", id.ID)
		}
		c := &content{any: id.Any, icmp: id.ICMP && !id.Any}
		if !id.Any {
			var err error
			if c.tcp, err = cleanRanges(id.TCP); err != nil {
				return state{}, fmt.Errorf("identity %d: tcp: %w", id.ID, err)
			}
			if c.udp, err = cleanRanges(id.UDP); err != nil {
				return state{}, fmt.Errorf("identity %d: udp: %w", id.ID, err)
			}
		}
		if n := len(c.tcp) + len(c.udp); n > PortCapacity {
			return state{}, fmt.Errorf("%w: identity %d has %d port elements, at most %d", ErrCapacity, id.ID, n, PortCapacity)
		}
		s.ids[id.ID] = c
	}
	for _, a := range e.Local {
		if !a.Is4() && !(a.Is6() && !a.Is4In6() && a.Zone() == "") {
			return state{}, fmt.Errorf("local address %v: not a plain IPv4 or IPv6 address", a)
		}
		if f := fam(a); !slices.Contains(s.local[f], a) {
			s.local[f] = append(s.local[f], a)
		}
	}
	for f := range s.local {
		slices.SortFunc(s.local[f], netip.Addr.Compare)
	}
	return s, nil
}

// ErrCapacity is wrapped by Apply's error when the desired state does not
// fit the table; the table is then left as it was.
var ErrCapacity = fmt.Errorf("policy too large for the nftables table")

// cleanRanges sorts rs and merges overlapping or adjacent ranges.
func cleanRanges(rs []acl.PortRange) ([]acl.PortRange, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	out := slices.Clone(rs)
	for _, r := range out {
		if r.Lo > r.Hi {
			return nil, fmt.Errorf("range %d-%d: low above high", r.Lo, r.Hi)
		}
	}
	slices.SortFunc(out, func(a, b acl.PortRange) int { return int(a.Lo) - int(b.Lo) })
	m := out[:1]
	for _, r := range out[1:] {
		last := &m[len(m)-1]
		if int(r.Lo) <= int(last.Hi)+1 {
			last.Hi = max(last.Hi, r.Hi)
			continue
		}
		m = append(m, r)
	}
	return m, nil
}

// refresh reads the managed content of the kernel's table into f.cur: the
// local sets, the identities (chains, port sets, source sets), the order
// of the dispatch chains and the mode.
func (f *Firewall) refresh() error {
	cur := state{ids: map[uint32]*content{}}
	for i, name := range []string{setLocal4, setLocal6} {
		elems, err := f.conn.GetSetElements(f.lay.sets[name])
		if err != nil {
			return fmt.Errorf("list elements of set %s: %w", name, err)
		}
		for _, e := range elems {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				return fmt.Errorf("set %s: element key of %d bytes", name, len(e.Key))
			}
			cur.local[i] = append(cur.local[i], a)
		}
		// A dump of a hash set the kernel is resizing may list an
		// element twice.
		slices.SortFunc(cur.local[i], netip.Addr.Compare)
		cur.local[i] = slices.Compact(cur.local[i])
	}
	chains, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != TableName {
			continue
		}
		if id, ok := parseIDChain(c.Name); ok {
			if cur.ids[id], err = f.readIdentity(id); err != nil {
				return err
			}
		}
	}
	if cur.order, err = f.readOrder(cur.ids); err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(cur.ids)) {
		for fa := range 2 {
			set := f.lay.sourceSet(id, fa)
			elems, err := f.conn.GetSetElements(set)
			if err != nil {
				return fmt.Errorf("list elements of set %s: %w", set.Name, err)
			}
			for _, e := range elems {
				a, ok := netip.AddrFromSlice(e.Key)
				if !ok || fam(a) != fa {
					return fmt.Errorf("set %s: element key of %d bytes", set.Name, len(e.Key))
				}
				cur.src = append(cur.src, acl.Source{Addr: a, ID: id})
			}
		}
	}
	// By address, then identity. A dump of a hash set the kernel is
	// resizing may list an element twice: equal entries count once. An
	// address in the sets of two identities (not something Apply writes)
	// stays in the first; the others are stray, deleted by the next Apply.
	slices.SortFunc(cur.src, func(x, y acl.Source) int {
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c
		}
		return int(int64(x.ID) - int64(y.ID))
	})
	cur.src = slices.Compact(cur.src)
	kept := cur.src[:0]
	for i, x := range cur.src {
		if i > 0 && cur.src[i-1].Addr == x.Addr {
			cur.stray = append(cur.stray, x)
			continue
		}
		kept = append(kept, x)
	}
	cur.src = kept
	for _, x := range cur.src {
		cur.nsrc[fam(x.Addr)]++
	}
	rules, err := f.conn.GetRules(f.lay.table, f.lay.meshIn)
	if err != nil {
		return fmt.Errorf("list rules of chain %s: %w", chainMeshIn, err)
	}
	if len(rules) == 0 {
		return fmt.Errorf("chain %s is empty; Install again", chainMeshIn)
	}
	last := rules[len(rules)-1]
	switch {
	case sameExprs(last.Exprs, finalExprs(false)):
	case sameExprs(last.Exprs, finalExprs(true)):
		cur.audit = true
	default:
		return fmt.Errorf("last rule of chain %s is not the final verdict; Install again", chainMeshIn)
	}
	f.lay.finalHandle = last.Handle
	f.cur, f.known = cur, true
	return nil
}
