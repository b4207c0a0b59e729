package nft

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/segmesh/segmesh/acl"
)

// egressState is what the egress part of the table holds.
type egressState struct {
	chains map[string]bool // local chains (out_node, wl_NAME)
	sets   map[string]bool // egress sets: dst_D_4/6, grant sets, seen sets
	// dests is what the destination sets hold, sorted by address then
	// identity (Egress.Destinations as applied: kept, not copied).
	dests  []acl.Source
	dstIDs map[uint32]bool // destination identities with sets
	locals []EgressLocal   // as last applied (nil: rebuild)
	audit  bool
}

func newEgressState() egressState {
	return egressState{chains: map[string]bool{}, sets: map[string]bool{}, dstIDs: map[uint32]bool{}}
}

// isLocalChain reports whether name is a local identity's chain.
func isLocalChain(name string) bool {
	return name == chainOutNode || strings.HasPrefix(name, wlPrefix) && !strings.Contains(name[len(wlPrefix):], "_")
}

// ApplyEgress makes the egress part of the table enforce e in one atomic
// batch. When only the destinations' addresses changed (peers joining or
// leaving into existing destination identities) the batch is the
// destination set elements that differ; otherwise mesh_out, out_deny and
// the local chains and their port sets are rewritten, destination sets
// diffed, and what is no longer needed deleted. After Install kept a
// table, the first ApplyEgress reads the egress objects and rewrites them.
// Call Apply first when Install found the previous release's table. On an
// error nothing of the batch is applied. ApplyEgress keeps e.Destinations
// until the next ApplyEgress (the diff's base): the caller must not
// modify it afterwards.
func (f *Firewall) ApplyEgress(e Egress) error {
	if err := e.validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return ErrNotInstalled
	}
	if f.legacy {
		return fmt.Errorf("apply egress: the previous release's table is not converted yet (Apply first)")
	}
	start := time.Now()
	if !f.eknown {
		cur, err := f.readEgress()
		if err != nil {
			return fmt.Errorf("apply egress: read table: %w", err)
		}
		f.ecur, f.eknown = cur, true
	}
	want := newEgressState()
	want.locals, want.audit, want.dests, want.dstIDs = e.Locals, e.Audit, e.Destinations, e.destIDs()
	rebuild := f.ecur.locals == nil || f.ecur.audit != e.Audit || !sameLocals(f.ecur.locals, e.Locals) ||
		!maps.Equal(f.ecur.dstIDs, want.dstIDs)
	n, err := f.queueEgress(&want, rebuild)
	if err == nil && n > 0 {
		err = f.conn.Flush()
	} else if err != nil {
		_ = f.conn.Flush() // discards the queue
	}
	if err != nil {
		f.eknown = false
		return fmt.Errorf("apply egress: %w", err)
	}
	f.ecur = want
	f.log.Debug("nftables egress updated", "locals", len(e.Locals), "destinations", len(e.Destinations),
		"rebuilt", rebuild, "messages", n, "duration", time.Since(start))
	return nil
}

// queueEgress queues the batch from f.ecur to want and completes want's
// chains and sets; n counts what was queued.
func (f *Firewall) queueEgress(want *egressState, rebuild bool) (n int, err error) {
	c, lay, cur := f.conn, f.lay, &f.ecur
	adds, dels := diffSources(cur.dests, want.dests)
	for _, id := range slices.Sorted(maps.Keys(want.dstIDs)) {
		for fa := range 2 {
			s := dstSetObj(lay.table, id, fa)
			want.sets[s.Name] = true
			if !cur.sets[s.Name] {
				if err := c.AddSet(s, adds[dstKey{id, fa}]); err != nil {
					return n, fmt.Errorf("set %s: %w", s.Name, err)
				}
				n++
				continue
			}
			a, d := adds[dstKey{id, fa}], dels[dstKey{id, fa}]
			if err := elems(c, s, a, d); err != nil {
				return n, err
			}
			n += len(a) + len(d)
		}
	}
	if !rebuild {
		want.chains, want.sets = cur.chains, cur.sets
		return n, nil
	}
	n++
	c.FlushChain(lay.output)
	c.FlushChain(lay.outDeny)
	c.FlushChain(lay.meshOut)
	for name := range cur.chains {
		c.FlushChain(&nftables.Chain{Table: lay.table, Name: name})
	}
	added := map[string]*nftables.Set{}
	set := func(s *nftables.Set, el []nftables.SetElement, keep bool) error {
		want.sets[s.Name] = true
		switch {
		case !cur.sets[s.Name]:
			if err := c.AddSet(s, el); err != nil {
				return fmt.Errorf("set %s: %w", s.Name, err)
			}
		case !keep:
			c.FlushSet(s)
			if err := elems(c, s, el, nil); err != nil {
				return err
			}
		}
		added[s.Name] = s
		return nil
	}
	for _, l := range want.locals {
		name := localChain(l.Name)
		want.chains[name] = true
		ch := &nftables.Chain{Table: lay.table, Name: name}
		if !cur.chains[name] {
			c.AddChain(ch)
		}
		for fa := range 2 {
			kt := nftables.TypeIPAddr
			if fa == 1 {
				kt = nftables.TypeIP6Addr
			}
			s := &nftables.Set{Table: lay.table, Name: seenSet(l.Name, fa), KeyType: kt, Dynamic: true,
				HasTimeout: true, Timeout: SeenTimeout, Counter: true, Size: seenSize}
			if err := set(s, nil, true); err != nil {
				return n, err
			}
		}
		for _, g := range l.Grants {
			if g.Any {
				continue
			}
			single, ranges := grantElements(g)
			if len(single) > 0 {
				s := &nftables.Set{Table: lay.table, Name: grantSet(l.Name, g.Dest, false), KeyType: portKey, Concatenation: true}
				if err := set(s, single, false); err != nil {
					return n, err
				}
			}
			if len(ranges) > 0 {
				s := &nftables.Set{Table: lay.table, Name: grantSet(l.Name, g.Dest, true), KeyType: portKey,
					Concatenation: true, Interval: true}
				if err := set(s, ranges, false); err != nil {
					return n, err
				}
			}
		}
		lookup := func(name string) *nftables.Set {
			if s := added[name]; s != nil {
				return s
			}
			if strings.HasPrefix(name, dstPrefix) {
				return &nftables.Set{Table: lay.table, Name: name}
			}
			return nil
		}
		seen := func(fa int) *nftables.Set { return added[seenSet(l.Name, fa)] }
		lay.addRules(c, ch, localRules(l, lookup, seen))
	}
	lay.addRules(c, lay.outDeny, outDenyRules(want.audit))
	lay.addRules(c, lay.meshOut, meshOutRules(want.locals))
	lay.addRules(c, lay.output, outputRules(f.cfg))
	for name := range cur.chains {
		if !want.chains[name] {
			c.DelChain(&nftables.Chain{Table: lay.table, Name: name})
		}
	}
	for name := range cur.sets {
		if !want.sets[name] {
			c.DelSet(&nftables.Set{Table: lay.table, Name: name})
		}
	}
	return n, nil
}

// readEgress reads the egress objects of the kernel's table: the local
// chains, the egress sets and the destination sets' addresses. locals is
// left nil, so the next ApplyEgress rewrites the rest.
func (f *Firewall) readEgress() (egressState, error) {
	st := newEgressState()
	chains, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return st, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == TableName && isLocalChain(c.Name) {
			st.chains[c.Name] = true
		}
	}
	sets, err := f.conn.GetSets(f.lay.table)
	if err != nil {
		return st, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		if !isEgressName(s.Name) {
			continue
		}
		st.sets[s.Name] = true
		id, fa, ok := parseDstSet(s.Name)
		if !ok {
			continue
		}
		st.dstIDs[id] = true
		el, err := f.conn.GetSetElements(s)
		if err != nil {
			return st, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		for _, e := range el {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok || fam(a) != fa {
				return st, fmt.Errorf("set %s: element key of %d bytes", s.Name, len(e.Key))
			}
			st.dests = append(st.dests, acl.Source{Addr: a, ID: id})
		}
	}
	// A dump of a hash set the kernel is resizing may list an element twice.
	slices.SortFunc(st.dests, cmpSource)
	st.dests = slices.Compact(st.dests)
	return st, nil
}

// EgressDenied returns, per local identity ("" for the node's) and
// destination address, the packets and bytes denied at the sender (audited
// in audit mode), from the sets wl_NAME_seen4/6 (as DeniedBySource).
func (f *Firewall) EgressDenied() (map[string]map[netip.Addr]Count, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return nil, ErrNotInstalled
	}
	out := map[string]map[netip.Addr]Count{}
	if !f.eknown || f.ecur.locals == nil {
		return out, nil
	}
	for _, l := range f.ecur.locals {
		m := map[netip.Addr]Count{}
		for fa := range 2 {
			s := &nftables.Set{Table: f.lay.table, Name: seenSet(l.Name, fa)}
			el, err := f.conn.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("list elements of set %s: %w", s.Name, err)
			}
			for _, e := range el {
				a, ok := netip.AddrFromSlice(e.Key)
				if !ok {
					continue
				}
				var cnt Count
				if e.Counter != nil {
					cnt = Count{Packets: e.Counter.Packets, Bytes: e.Counter.Bytes}
				}
				m[a] = cnt
			}
		}
		out[l.Name] = m
	}
	return out, nil
}

// dstKey names one destination set: identity and family.
type dstKey struct {
	id  uint32
	fam int
}

func dstSetObj(t *nftables.Table, id uint32, fa int) *nftables.Set {
	s := &nftables.Set{Table: t, Name: dstSet(id, fa), KeyType: nftables.TypeIPAddr}
	if fa == 1 {
		s.KeyType = nftables.TypeIP6Addr
	}
	return s
}

// parseDstSet returns the identity and family of set dst_D_4 / dst_D_6.
func parseDstSet(name string) (uint32, int, bool) {
	rest, ok := strings.CutPrefix(name, dstPrefix)
	if !ok || len(rest) < 3 {
		return 0, 0, false
	}
	fa := 0
	switch rest[len(rest)-2:] {
	case "_4":
	case "_6":
		fa = 1
	default:
		return 0, 0, false
	}
	id, err := strconv.ParseUint(rest[:len(rest)-2], 10, 32)
	if err != nil || id == 0 || strconv.FormatUint(id, 10) != rest[:len(rest)-2] {
		return 0, 0, false
	}
	return uint32(id), fa, true
}

func cmpSource(x, y acl.Source) int {
	if c := x.Addr.Compare(y.Addr); c != 0 {
		return c
	}
	return cmp.Compare(x.ID, y.ID)
}

// diffSources merges two lists sorted by cmpSource into the elements to
// add and delete per destination set. Equal lists cost one comparison
// pass and allocate nothing.
func diffSources(cur, want []acl.Source) (adds, dels map[dstKey][]nftables.SetElement) {
	if slices.Equal(cur, want) {
		return nil, nil
	}
	adds, dels = map[dstKey][]nftables.SetElement{}, map[dstKey][]nftables.SetElement{}
	put := func(m map[dstKey][]nftables.SetElement, s acl.Source) {
		k := dstKey{s.ID, fam(s.Addr)}
		m[k] = append(m[k], nftables.SetElement{Key: s.Addr.AsSlice()})
	}
	i, j := 0, 0
	for i < len(cur) || j < len(want) {
		switch {
		case j == len(want):
			put(dels, cur[i])
			i++
		case i == len(cur):
			put(adds, want[j])
			j++
		default:
			switch c := cmpSource(cur[i], want[j]); {
			case c == 0:
				i++
				j++
			case c < 0:
				put(dels, cur[i])
				i++
			default:
				put(adds, want[j])
				j++
			}
		}
	}
	return adds, dels
}

func sameLocals(a, b []EgressLocal) bool {
	return slices.EqualFunc(a, b, func(x, y EgressLocal) bool {
		return x.Name == y.Name && slices.Equal(x.Cgroups, y.Cgroups) &&
			slices.EqualFunc(x.Grants, y.Grants, func(g, h acl.Grant) bool {
				return g.Dest == h.Dest && g.Any == h.Any && g.ICMP == h.ICMP &&
					slices.Equal(g.TCP, h.TCP) && slices.Equal(g.UDP, h.UDP)
			})
	})
}
