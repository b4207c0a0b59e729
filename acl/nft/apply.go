package nft

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"github.com/google/nftables"
	"github.com/segmesh/segmesh/acl"
)

// Apply makes table inet segmesh enforce e in ONE atomic netlink batch —
// never a flush-and-rebuild of the table:
//
//   - a source joining or leaving is one element of its identity's source
//     set (id_N_s4 or id_N_s6) added or deleted; changing identity, one
//     deleted from the old set and one added to the new;
//   - an identity first used gets its chain and sets; one whose ports
//     changed has its sets and chain rewritten; one no longer used is
//     deleted after the rules going to it; when identities come or go the
//     dispatch chains src4 and src6 are rewritten;
//   - the final rule of mesh_in is replaced when e.Audit differs.
//
// When nothing differs nothing is sent. The diff is against what the
// Firewall last wrote; after Install kept a table (and after a failed
// Apply) the kernel is read first: identity chains found there whose rules
// are not exactly what Apply writes for their sets' elements are rewritten,
// the others diffed like the rest. After Install found the previous release's table, the first
// Apply deletes it and creates the new table with e's content in the same
// batch, so no packet sees neither.
//
// e is validated first; a state that does not fit (see ErrCapacity) is
// refused and the table left as it was. On a kernel error nothing of the
// batch is applied. Apply keeps e.Sources until the next Apply (the diff's
// base): the caller must not modify it afterwards.
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
	base := state{ids: map[uint32]*content{}} // a conversion starts from nothing
	if !f.legacy {
		if !f.known {
			if err := f.refresh(); err != nil {
				return fmt.Errorf("apply: read table: %w", err)
			}
		}
		base = f.cur
	}
	// The sources are checked against the base before anything is queued:
	// a refusal leaves the table and what the Firewall knows of it as
	// they were.
	ch, err := sourceDiff(base, &want)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	var st batchStats
	if f.legacy {
		st, err = f.convert(&want, ch)
	} else {
		st, err = f.diff(&want, ch)
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
func (f *Firewall) convert(want *state, ch *sourceChanges) (batchStats, error) {
	lay := newLayout()
	f.conn.DelTable(lay.table)
	final, err := lay.addAll(f.conn, f.cfg, want.audit)
	if err != nil {
		_ = f.conn.Flush() // discards the queue
		return batchStats{}, err
	}
	f.lay = lay
	empty := state{ids: map[uint32]*content{}, audit: want.audit}
	st, err := f.queue(empty, want, ch, false)
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
	f.eknown, f.ecur = true, newEgressState()
	st.Converted = true
	f.log.Info("nftables table of the previous release converted", "table", "inet "+TableName,
		"sources", len(want.src), "identities", len(want.ids))
	return st, nil
}

// diff sends the changes from f.cur to want.
func (f *Firewall) diff(want *state, ch *sourceChanges) (batchStats, error) {
	st, err := f.queue(f.cur, want, ch, true)
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

// queue queues on f.conn the messages that turn cur into want, ch being
// sourceDiff(cur, want), and sets want.order. mode tells whether the final
// rule may need replacing (it is new in a conversion).
func (f *Firewall) queue(cur state, want *state, ch *sourceChanges, mode bool) (batchStats, error) {
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
	// Identities: new ones first (their source sets get elements below),
	// changed ones rewritten.
	idsChanged := cur.order == nil
	for _, id := range slices.Sorted(maps.Keys(want.ids)) {
		w := want.ids[id]
		old, had := cur.ids[id]
		switch {
		case !had:
			if err := f.addIdentity(id, w); err != nil {
				return st, err
			}
			st.IdentitiesNew++
			idsChanged = true
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
	for id := range cur.ids {
		if _, ok := want.ids[id]; !ok {
			idsChanged = true
		}
	}
	// Source set elements, grouped by set.
	if err := ch.queue(c, lay, &st); err != nil {
		return st, err
	}
	// The dispatch chains, when the identities changed: one rule per
	// identity and family, the identity with the most sources first.
	if idsChanged {
		want.order = dispatchOrder(*want)
		st.DispatchRewritten = true
		for fa, chain := range lay.src {
			c.FlushChain(chain)
			for _, id := range want.order {
				c.AddRule(&nftables.Rule{Table: lay.table, Chain: chain, Exprs: dispatchRule(lay.sourceSet(id, fa), id, fa)})
			}
		}
	} else {
		want.order = cur.order
	}
	// Identities no longer used, after the rules going to them.
	for _, id := range slices.Sorted(maps.Keys(cur.ids)) {
		if _, ok := want.ids[id]; ok {
			continue
		}
		ch := &nftables.Chain{Table: lay.table, Name: idChain(id)}
		c.FlushChain(ch)
		c.DelChain(ch)
		for _, s := range lay.allIdentitySets(id) {
			c.DelSet(s)
		}
		st.IdentitiesDeleted++
	}
	if mode && cur.audit != want.audit {
		c.ReplaceRule(&nftables.Rule{Table: lay.table, Chain: lay.meshIn, Handle: lay.finalHandle, Exprs: finalExprs(want.audit)})
		st.ModeSwitched = true
	}
	return st, nil
}

// sourceDiff walks cur.src and want.src (both by address) and returns the
// source set changes, with want.nsrc set. A want entry equal to a cur
// entry is valid (cur was validated when written, or read from the
// kernel), and two such entries in a row are in order (cur is sorted): so
// only what differs is checked, and a join among 100,000 sources costs one
// comparison per source. A source leaving an identity that goes away needs
// no deletion: its set is deleted with the identity.
func sourceDiff(cur state, want *state) (*sourceChanges, error) {
	maxID := uint32(0)
	for id := range want.ids {
		maxID = max(maxID, id)
	}
	known := make([]bool, maxID+1)
	for id := range want.ids {
		known[id] = true
	}
	idsGone := false
	for id := range cur.ids {
		idsGone = idsGone || id > maxID || !known[id]
	}
	ch := newSourceChanges()
	n := cur.nsrc
	check := func(j int, matched, prevMatched bool) error {
		w := want.src[j]
		if !matched {
			a := w.Addr
			if !a.Is4() && !(a.Is6() && !a.Is4In6() && a.Zone() == "") {
				return fmt.Errorf("source %v: not a plain IPv4 or IPv6 address", a)
			}
		}
		if (!matched || idsGone) && (w.ID > maxID || !known[w.ID]) {
			return fmt.Errorf("source %v: identity %d not listed", w.Addr, w.ID)
		}
		if j > 0 && !(matched && prevMatched) && !want.src[j-1].Addr.Less(w.Addr) {
			return fmt.Errorf("sources not strictly sorted by address at %v", w.Addr)
		}
		return nil
	}
	del := func(x acl.Source) {
		n[fam(x.Addr)]--
		if x.ID <= maxID && known[x.ID] {
			ch.add(false, x)
		}
	}
	add := func(x acl.Source) {
		n[fam(x.Addr)]++
		ch.add(true, x)
	}
	i, j := 0, 0
	prevMatched := false
	for j < len(want.src) {
		w := want.src[j]
		if i < len(cur.src) {
			c := cur.src[i]
			if c == w {
				if err := check(j, true, prevMatched); err != nil {
					return nil, err
				}
				i, j, prevMatched = i+1, j+1, true
				// The run of equal entries that follows (nearly all),
				// compared only for equality.
				if !idsGone {
					i, j = equalRun(cur.src, want.src, i, j)
				}
				continue
			}
			if c.Addr.Less(w.Addr) {
				del(c)
				i++
				continue
			}
			if c.Addr == w.Addr {
				// Same address, another identity: checked as a new entry.
				if err := check(j, false, prevMatched); err != nil {
					return nil, err
				}
				del(c)
				add(w)
				i, j, prevMatched = i+1, j+1, false
				continue
			}
		}
		if err := check(j, false, prevMatched); err != nil {
			return nil, err
		}
		add(w)
		j, prevMatched = j+1, false
	}
	for ; i < len(cur.src); i++ {
		del(cur.src[i])
	}
	for _, x := range cur.stray {
		if x.ID <= maxID && known[x.ID] {
			ch.add(false, x) // not counted: never in cur.nsrc
		}
	}
	for f, k := range n {
		if k > SourceCapacity {
			return nil, fmt.Errorf("%w: %d IPv%d sources, at most %d", ErrCapacity, k, 4+2*f, SourceCapacity)
		}
	}
	want.nsrc = n
	return ch, nil
}

// equalRun returns the first positions from i in a and j in b where the
// entries differ (or either ends). Blocks of entries are compared as
// memory first (equal bytes are equal entries, padding included; unequal
// bytes are compared entry by entry): at 100,000 peers the walk is most of
// a join's cost.
func equalRun(a, b []acl.Source, i, j int) (int, int) {
	const block = 256
	size := int(unsafe.Sizeof(acl.Source{}))
	for i+block <= len(a) && j+block <= len(b) {
		x := unsafe.Slice((*byte)(unsafe.Pointer(&a[i])), block*size)
		y := unsafe.Slice((*byte)(unsafe.Pointer(&b[j])), block*size)
		if string(x) != string(y) {
			break
		}
		i, j = i+block, j+block
	}
	for i < len(a) && j < len(b) && a[i] == b[j] {
		i, j = i+1, j+1
	}
	return i, j
}

// dispatchOrder returns want's identities by number of sources, most
// first (ties by number): the order of the dispatch rules, so that most
// packets meet their identity's rule early.
func dispatchOrder(want state) []uint32 {
	n := make(map[uint32]int, len(want.ids))
	for _, s := range want.src {
		n[s.ID]++
	}
	order := slices.Collect(maps.Keys(want.ids))
	slices.SortFunc(order, func(a, b uint32) int {
		if n[a] != n[b] {
			return n[b] - n[a]
		}
		return int(int64(a) - int64(b))
	})
	return order
}

// sourceChanges collects source set element changes by identity and
// family.
type sourceChanges struct {
	sets map[sourceKey]*[2][]nftables.SetElement // [0] deletions, [1] additions
}

type sourceKey struct {
	id  uint32
	fam int
}

func newSourceChanges() *sourceChanges {
	return &sourceChanges{sets: map[sourceKey]*[2][]nftables.SetElement{}}
}

func (s *sourceChanges) add(addition bool, x acl.Source) {
	k := sourceKey{x.ID, fam(x.Addr)}
	e := s.sets[k]
	if e == nil {
		e = new([2][]nftables.SetElement)
		s.sets[k] = e
	}
	i := 0
	if addition {
		i = 1
	}
	e[i] = append(e[i], nftables.SetElement{Key: x.Addr.AsSlice()})
}

// queue queues the changes, deletions before additions, sets in a fixed
// order, and counts them in st.
func (s *sourceChanges) queue(c *nftables.Conn, lay *layout, st *batchStats) error {
	keys := slices.SortedFunc(maps.Keys(s.sets), func(a, b sourceKey) int {
		if a.id != b.id {
			return int(int64(a.id) - int64(b.id))
		}
		return a.fam - b.fam
	})
	for _, addition := range []int{0, 1} {
		for _, k := range keys {
			list := s.sets[k][addition]
			if len(list) == 0 {
				continue
			}
			set := lay.sourceSet(k.id, k.fam)
			var err error
			if addition == 1 {
				err = c.SetAddElements(set, list)
				st.SourceAdds[k.fam] += len(list)
			} else {
				err = c.SetDeleteElements(set, list)
				st.SourceDels[k.fam] += len(list)
			}
			if err != nil {
				return fmt.Errorf("set %s: %w", set.Name, err)
			}
		}
	}
	return nil
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
	for fa := range 2 {
		s := lay.sourceSet(id, fa)
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
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
