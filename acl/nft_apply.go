package acl

import (
	"fmt"
	"time"
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
// d is validated first (addresses, port-carrying protocols, port order, and
// per family at most 131,072 single-port elements and 32,768 ICMP or "any"
// sources: the capacities of the hash sets); an invalid d changes nothing. Overlapping port ranges of
// one source and protocol are merged.
//
// Cost: d.Ports sorted by source, like the compiler's output, is compared
// with the previous one and only the sources whose entries changed are
// converted and diffed (a join among 10,000 peers does not touch the other
// 180,000 port elements beyond that comparison); other input takes a full
// build and diff. Buffers are reused from one Apply to the next. The batch
// is encoded here and sent on the Firewall's second netlink connection (see
// elemBatch).
func (f *Firewall) Apply(d Desired) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The desired state is built into the buffers of the state before the
	// last one (f.spare), so a steady stream of Applies allocates nothing
	// proportional to the number of elements.
	want := f.spare
	if want == nil {
		want = new(elementSet)
	}
	var adds, dels [numSets][]elem
	memo, err := f.buildWant(d, want, &adds, &dels)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	for i := range numSets {
		if c := setCapacity(i); c > 0 && len(want[i]) > c {
			f.spare = want // the current state and its memo are intact
			return fmt.Errorf("apply: %d elements for set %s exceed its capacity of %d", len(want[i]), setNames[i], c)
		}
	}
	var st batchStats
	for i := range numSets {
		switch {
		case memo && kinds[i].ports: // diffed by buildWant
		case len(f.cur[i]) == 0: // all of want: no copy (a first Apply)
			adds[i], dels[i] = want[i], nil
		default:
			adds[i], dels[i] = diffElems(f.cur[i], want[i], nil, nil)
		}
	}
	b := &f.batch
	b.reset()
	b.reserve(&adds, &dels)
	// Deletions first: an interval element may not overlap one that is still
	// in the set, even within a transaction.
	for i := range numSets {
		b.elements(true, i, dels[i])
		st.Dels += len(dels[i])
	}
	for i := range numSets {
		b.elements(false, i, adds[i])
		st.Adds += len(adds[i])
	}
	if d.Audit != f.audit {
		if err := b.replaceRule(chainMeshIn, f.lay.finalHandle, finalExprs(d.Audit)); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		st.ModeSwitched = true
	}
	if b.empty() {
		f.spare = want
		f.memo.remember(d.Ports, memo)
		return nil
	}
	start := time.Now()
	err = f.bconn.send(b.messages())
	f.lastFlush = time.Since(start)
	b.release()
	if err != nil {
		f.known = false
		f.memo.forget()
		f.spare = want
		return fmt.Errorf("apply: nftables batch (+%d -%d elements, mode switch %v): %w", st.Adds, st.Dels, st.ModeSwitched, err)
	}
	f.cur, f.spare = want, f.cur
	// The next Apply builds into spare: size it now, while this batch's
	// cost dwarfs it, rather than in the next (often a one-peer change).
	for i := range f.spare {
		if n := len(f.cur[i]); cap(f.spare[i]) < n {
			f.spare[i] = make([]elem, 0, n+n/8)
		}
	}
	f.memo.remember(d.Ports, memo)
	f.audit, f.last = d.Audit, st
	f.log.Debug("nftables sets updated", "added", st.Adds, "deleted", st.Dels, "elements", want.len(), "audit", d.Audit,
		"mode_switched", st.ModeSwitched, "netlink_duration", f.lastFlush)
	return nil
}

// buildWant fills want with the desired state d, after reading the kernel
// when the current state is not known. memo reports that the port sets were
// derived from the current ones and the changed part of d.Ports (see
// portMemo): then adds and dels hold their differences, and want's other
// sets still need diffing.
func (f *Firewall) buildWant(d Desired, want *elementSet, adds, dels *[numSets][]elem) (memo bool, err error) {
	if err := f.build.addrs(d, want); err != nil {
		return false, err
	}
	oldPorts, newPorts, ok := f.memo.changed(d.Ports)
	if ok && f.known && f.installed {
		b := &f.build
		for _, i := range portSets {
			b.old[i], b.new[i] = b.old[i][:0], b.new[i][:0]
		}
		if err := b.ports(newPorts, &b.new); err != nil {
			return false, err
		}
		if err := b.ports(oldPorts, &b.old); err != nil {
			return false, err // cannot happen: it was applied
		}
		for _, i := range portSets {
			adds[i], dels[i] = diffElems(b.old[i], b.new[i], nil, nil)
			if want[i], ok = applyDelta(want[i], f.cur[i], adds[i], dels[i]); !ok {
				break
			}
		}
		if ok {
			return true, nil
		}
		f.log.Warn("nftables: remembered port elements do not match the current state; full diff")
		f.memo.forget()
		for _, i := range portSets {
			want[i], adds[i], dels[i] = want[i][:0], nil, nil
		}
	}
	if err := f.build.ports(d.Ports, want); err != nil {
		return false, err
	}
	if !f.installed {
		return false, ErrNotInstalled
	}
	if !f.known {
		if err := f.refresh(); err != nil {
			return false, fmt.Errorf("read current state: %w", err)
		}
	}
	return false, nil
}

// refresh reads the set elements and the final rule (mode and handle) from
// the kernel.
func (f *Firewall) refresh() error {
	cur := new(elementSet)
	for i := range numSets {
		var l []elem
		for shard, name := range kernelSetNames(i) {
			elems, err := f.conn.GetSetElements(f.lay.sets[name])
			if err != nil {
				return fmt.Errorf("list elements of set %s: %w", name, err)
			}
			for _, se := range elems {
				e, err := kinds[i].elemFromKernel(name, se)
				if err != nil {
					return err
				}
				if kinds[i].interval && shardOf(e) != shard {
					return fmt.Errorf("set %s: element %s belongs to shard %d; Install again", name, describeElement(name, se), shardOf(e))
				}
				l = append(l, e)
			}
		}
		sortCompact(&l)
		cur[i] = l
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
