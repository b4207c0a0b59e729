package acl

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
)

// Apply makes the kernel's set elements equal to d in ONE atomic netlink
// batch of element deletions and additions — never a flush-and-rebuild — and
// replaces the final rule of mesh_in when d.Audit differs from the current
// mode, in the same batch. When nothing differs nothing is sent.
//
// The diff is against the elements the Firewall last wrote; on the first
// Apply after Install kept an existing table (and after any failed Apply)
// the elements and the mode are read from the kernel first. On error the
// batch is not applied (it is atomic) and the next Apply reads the kernel and
// retries the full diff.
//
// d is validated first (addresses, port-carrying protocols, port order); an
// invalid d changes nothing. Overlapping port ranges of one source and
// protocol are merged.
func (f *Firewall) Apply(d Desired) error {
	want, err := desiredElements(d)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return fmt.Errorf("apply: %w", ErrNotInstalled)
	}
	if !f.known {
		if err := f.refresh(); err != nil {
			return fmt.Errorf("apply: read current state: %w", err)
		}
	}
	var st batchStats
	adds := make(map[string][]elem, len(setNames))
	// Deletions first: an interval element may not overlap one that is still
	// in the set, even within a transaction.
	for _, name := range setNames {
		a, dels := diffElems(f.cur[name], want[name])
		adds[name] = a
		if len(dels) > 0 {
			_ = f.conn.SetDeleteElements(f.lay.sets[name], setElements(dels)) // a queueing error surfaces in Flush
			st.Dels += len(dels)
		}
	}
	for _, name := range setNames {
		if a := adds[name]; len(a) > 0 {
			_ = f.conn.SetAddElements(f.lay.sets[name], setElements(a))
			st.Adds += len(a)
		}
	}
	if d.Audit != f.audit {
		f.conn.ReplaceRule(&nftables.Rule{Table: f.lay.table, Chain: f.lay.meshIn, Handle: f.lay.finalHandle, Exprs: finalExprs(d.Audit)})
		st.ModeSwitched = true
	}
	if st == (batchStats{}) {
		return nil
	}
	if err := f.conn.Flush(); err != nil {
		f.known = false
		return fmt.Errorf("apply: nftables batch (+%d -%d elements, mode switch %v): %w", st.Adds, st.Dels, st.ModeSwitched, err)
	}
	f.cur, f.audit, f.last = want, d.Audit, st
	f.log.Debug("nftables sets updated", "added", st.Adds, "deleted", st.Dels, "elements", want.len(), "audit", d.Audit, "mode_switched", st.ModeSwitched)
	return nil
}

// refresh reads the set elements and the final rule (mode and handle) from
// the kernel.
func (f *Firewall) refresh() error {
	cur := make(elementSet, len(setNames))
	for _, name := range setNames {
		s := f.lay.sets[name]
		elems, err := f.conn.GetSetElements(s)
		if err != nil {
			return fmt.Errorf("list elements of set %s: %w", name, err)
		}
		l := make([]elem, 0, len(elems))
		for _, se := range elems {
			e, err := elemFromKernel(s, se)
			if err != nil {
				return err
			}
			l = append(l, e)
		}
		slices.SortFunc(l, compareElem)
		cur[name] = slices.Compact(l)
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
		f.audit = false
	case sameExprs(last.Exprs, finalExprs(true)):
		f.audit = true
	default:
		return fmt.Errorf("last rule of chain %s is not the final verdict; Install again", chainMeshIn)
	}
	f.lay.finalHandle = last.Handle
	f.cur, f.known = cur, true
	return nil
}
