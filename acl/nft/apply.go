package nft

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/segmesh/segmesh/acl"
)

// Apply makes table inet segmesh enforce e in ONE atomic netlink batch —
// never a flush-and-rebuild of the table:
//
//   - a source joining, leaving or changing identity is one element of
//     src4/src6 added, deleted, or deleted and re-added;
//   - an identity first used gets its chain and sets; one whose ports
//     changed has its sets and chain rewritten; one no longer used is
//     deleted after the map elements jumping to it;
//   - the final rule of mesh_in is replaced when e.Audit differs.
//
// When nothing differs nothing is sent. The diff is against what the
// Firewall last wrote; after Install kept a table (and after a failed
// Apply) the kernel is read first, and identity chains found there are
// rewritten. After Install found the previous release's table, the first
// Apply deletes it and creates the new table with e's content in the same
// batch, so no packet sees neither.
//
// e is validated first; a state that does not fit (see ErrCapacity) is
// refused and the table left as it was. On a kernel error nothing of the
// batch is applied.
func (f *Firewall) Apply(e acl.Enforced) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return ErrNotInstalled
	}
	want, err := desiredState(e)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	start := time.Now()
	var st batchStats
	if f.legacy {
		st, err = f.convert(want)
	} else {
		if !f.known {
			if err := f.refresh(); err != nil {
				return fmt.Errorf("apply: read table: %w", err)
			}
		}
		st, err = f.diff(want)
	}
	if err != nil {
		f.known = false
		return fmt.Errorf("apply: %w", err)
	}
	f.cur, f.known, f.last = want, true, st
	f.log.Debug("nftables table updated", "sources", len(want.src), "identities", len(want.ids),
		"source_adds", st.SourceAdds, "source_dels", st.SourceDels, "identities_new", st.IdentitiesNew,
		"identities_rewritten", st.IdentitiesRewritten, "identities_deleted", st.IdentitiesDeleted,
		"mode_switched", st.ModeSwitched, "converted", st.Converted, "duration", time.Since(start))
	return nil
}

// convert replaces the previous release's table by the new one holding
// want, in one batch.
func (f *Firewall) convert(want state) (batchStats, error) {
	lay := newLayout()
	f.conn.DelTable(lay.table)
	final, err := lay.addAll(f.conn, f.cfg, want.audit)
	if err != nil {
		_ = f.conn.Flush() // discards the queue
		return batchStats{}, err
	}
	f.lay = lay
	empty := state{ids: map[uint32]*content{}, audit: want.audit}
	st, err := f.queue(empty, want, false)
	if err == nil {
		err = f.conn.Flush()
	} else {
		_ = f.conn.Flush()
	}
	if err != nil {
		return batchStats{}, fmt.Errorf("convert the previous release's table inet %s: %w", TableName, err)
	}
	if final.Handle == 0 {
		return batchStats{}, fmt.Errorf("convert table inet %s: kernel did not report the final rule's handle", TableName)
	}
	lay.finalHandle = final.Handle
	f.legacy = false
	st.Converted = true
	f.log.Info("nftables table of the previous release converted", "table", "inet "+TableName,
		"sources", len(want.src), "identities", len(want.ids))
	return st, nil
}

// diff sends the changes from f.cur to want.
func (f *Firewall) diff(want state) (batchStats, error) {
	st, err := f.queue(f.cur, want, true)
	if err != nil {
		_ = f.conn.Flush()
		return batchStats{}, err
	}
	if st == (batchStats{}) {
		return st, nil
	}
	if err := f.conn.Flush(); err != nil {
		return batchStats{}, err
	}
	return st, nil
}

// queue queues on f.conn the messages that turn cur into want. mode tells
// whether the final rule may need replacing (it is new in a conversion).
func (f *Firewall) queue(cur, want state, mode bool) (batchStats, error) {
	var st batchStats
	c, lay := f.conn, f.lay
	// Only-to-me addresses.
	for i, name := range []string{setLocal4, setLocal6} {
		adds, dels := diffAddrs(cur.local[i], want.local[i])
		if err := elems(c, lay.sets[name], adds, dels); err != nil {
			return st, err
		}
		st.Local += len(adds) + len(dels)
	}
	// Identities: new ones first (the map elements jump to them), changed
	// ones rewritten.
	for _, id := range slices.Sorted(maps.Keys(want.ids)) {
		w := want.ids[id]
		old, had := cur.ids[id]
		switch {
		case !had:
			if err := f.addIdentity(id, w); err != nil {
				return st, err
			}
			st.IdentitiesNew++
		case !w.equal(old):
			if err := f.rewriteIdentity(id, w); err != nil {
				return st, err
			}
			st.IdentitiesRewritten++
		default:
			continue
		}
		st.PortElements += len(w.tcp) + len(w.udp)
	}
	// Source map elements.
	var adds, dels [2][]nftables.SetElement
	del := func(x acl.Source) {
		dels[fam(x.Addr)] = append(dels[fam(x.Addr)], nftables.SetElement{Key: x.Addr.AsSlice()})
	}
	add := func(x acl.Source) {
		adds[fam(x.Addr)] = append(adds[fam(x.Addr)], nftables.SetElement{Key: x.Addr.AsSlice(),
			VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: idChain(x.ID)}})
	}
	// Both sorted: a merge walk, equal entries (nearly all) compared only
	// for equality.
	i, j := 0, 0
	for i < len(cur.src) && j < len(want.src) {
		c, w := cur.src[i], want.src[j]
		switch {
		case c == w:
			i, j = i+1, j+1
		case c.Addr == w.Addr:
			del(c)
			add(w)
			i, j = i+1, j+1
		case c.Addr.Less(w.Addr):
			del(c)
			i++
		default:
			add(w)
			j++
		}
	}
	for ; i < len(cur.src); i++ {
		del(cur.src[i])
	}
	for ; j < len(want.src); j++ {
		add(want.src[j])
	}
	for i, name := range []string{mapSrc4, mapSrc6} {
		if len(dels[i]) > 0 {
			if err := c.SetDeleteElements(lay.sets[name], dels[i]); err != nil {
				return st, fmt.Errorf("map %s: %w", name, err)
			}
		}
		if len(adds[i]) > 0 {
			if err := c.SetAddElements(lay.sets[name], adds[i]); err != nil {
				return st, fmt.Errorf("map %s: %w", name, err)
			}
		}
		st.SourceAdds[i], st.SourceDels[i] = len(adds[i]), len(dels[i])
	}
	// Identities no longer used, after the elements jumping to them.
	for _, id := range slices.Sorted(maps.Keys(cur.ids)) {
		if _, ok := want.ids[id]; ok {
			continue
		}
		ch := &nftables.Chain{Table: lay.table, Name: idChain(id)}
		c.FlushChain(ch)
		c.DelChain(ch)
		p, r := lay.identitySets(id)
		c.DelSet(p)
		c.DelSet(r)
		st.IdentitiesDeleted++
	}
	if mode && cur.audit != want.audit {
		c.ReplaceRule(&nftables.Rule{Table: lay.table, Chain: lay.meshIn, Handle: lay.finalHandle, Exprs: finalExprs(want.audit)})
		st.ModeSwitched = true
	}
	return st, nil
}

// addIdentity queues the chain and sets of a new identity.
func (f *Firewall) addIdentity(id uint32, w *content) error {
	c, lay := f.conn, f.lay
	ch := c.AddChain(&nftables.Chain{Table: lay.table, Name: idChain(id)})
	p, r := lay.identitySets(id)
	single, ranges := portElements(w)
	if err := c.AddSet(p, single); err != nil {
		return fmt.Errorf("set %s: %w", p.Name, err)
	}
	if err := c.AddSet(r, ranges); err != nil {
		return fmt.Errorf("set %s: %w", r.Name, err)
	}
	for _, exprs := range identityRules(p, r, w.icmp, w.any) {
		c.AddRule(&nftables.Rule{Table: lay.table, Chain: ch, Exprs: exprs})
	}
	return nil
}

// rewriteIdentity queues the rewrite of an existing identity's sets and
// chain (the set objects are kept: the rules refer to them by name).
func (f *Firewall) rewriteIdentity(id uint32, w *content) error {
	c, lay := f.conn, f.lay
	ch := &nftables.Chain{Table: lay.table, Name: idChain(id)}
	p, r := lay.identitySets(id)
	c.FlushSet(p)
	c.FlushSet(r)
	single, ranges := portElements(w)
	if err := elems(c, p, single, nil); err != nil {
		return err
	}
	if err := elems(c, r, ranges, nil); err != nil {
		return err
	}
	c.FlushChain(ch)
	for _, exprs := range identityRules(p, r, w.icmp, w.any) {
		c.AddRule(&nftables.Rule{Table: lay.table, Chain: ch, Exprs: exprs})
	}
	return nil
}

// portElements returns the elements of an identity's port set and range
// set: `proto . port`, each field padded to 4 bytes.
func portElements(w *content) (single, ranges []nftables.SetElement) {
	key := func(proto uint8, port uint16) []byte {
		return []byte{proto, 0, 0, 0, byte(port >> 8), byte(port), 0, 0}
	}
	for _, p := range []struct {
		proto uint8
		rs    []acl.PortRange
	}{{acl.ProtoTCP, w.tcp}, {acl.ProtoUDP, w.udp}} {
		for _, r := range p.rs {
			if r.Lo == r.Hi {
				single = append(single, nftables.SetElement{Key: key(p.proto, r.Lo)})
			} else {
				ranges = append(ranges, nftables.SetElement{Key: key(p.proto, r.Lo), KeyEnd: key(p.proto, r.Hi)})
			}
		}
	}
	return single, ranges
}

// elems queues additions and deletions of plain elements of set s.
func elems(c *nftables.Conn, s *nftables.Set, adds, dels []nftables.SetElement) error {
	if len(dels) > 0 {
		if err := c.SetDeleteElements(s, dels); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	if len(adds) > 0 {
		if err := c.SetAddElements(s, adds); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	return nil
}

// diffAddrs returns the address elements to add and delete to turn cur
// into want (both sorted).
func diffAddrs(cur, want []netip.Addr) (adds, dels []nftables.SetElement) {
	for _, a := range want {
		if _, found := slices.BinarySearchFunc(cur, a, netip.Addr.Compare); !found {
			adds = append(adds, nftables.SetElement{Key: a.AsSlice()})
		}
	}
	for _, a := range cur {
		if _, found := slices.BinarySearchFunc(want, a, netip.Addr.Compare); !found {
			dels = append(dels, nftables.SetElement{Key: a.AsSlice()})
		}
	}
	return adds, dels
}
