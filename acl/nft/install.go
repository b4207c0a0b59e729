package nft

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Install puts table inet segmesh in place in its fail-closed state — no
// sources, no identities (only replies and ICMP errors pass on the mesh
// interface), enforce mode — in ONE atomic batch. Call it before the mesh
// interface is up and before any peer is configured.
//
// A table left by a crash is reconciled, never duplicated: when its fixed
// chains, rules, sets and counter are this version's layout (identity
// chains id_N and their sets aside) it is kept with its elements (the next
// Apply reads and diffs them), and only its final rule is switched back to
// enforce mode if it was in audit mode. The previous release's table (see
// isLegacy) is kept as it is, still enforcing its elements, and the first
// Apply replaces it in one batch. Any other table of that name is deleted
// and recreated in the same batch. No other table is read for writing or
// written.
func (f *Firewall) Install() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.installed, f.known, f.legacy, f.cur = false, false, false, state{}
	f.eknown, f.ecur = false, egressState{}
	lay := newLayout()
	exists, err := f.tableExists()
	if err != nil {
		return err
	}
	if exists {
		handle, audit, why, err := f.inspect(lay)
		if err != nil {
			// Unreadable (e.g. expressions this library cannot decode):
			// recreating is always safe.
			why = err.Error()
		}
		if why == "" {
			return f.keep(lay, handle, audit)
		}
		if legacy, err := f.isLegacy(lay.table); err == nil && legacy {
			f.lay, f.installed, f.legacy = lay, true, true
			f.log.Info("nftables table of the previous release found; the first apply converts it", "table", "inet "+TableName)
			return nil
		}
		f.log.Warn("existing nftables table differs from this layout; recreating it", "table", "inet "+TableName, "reason", why)
		f.conn.DelTable(lay.table)
	}
	final, err := lay.addAll(f.conn, f.cfg, false)
	if err == nil {
		// Flush also discards the queued messages when queueing failed.
		err = f.conn.Flush()
	} else {
		_ = f.conn.Flush()
	}
	if err != nil {
		return fmt.Errorf("install table inet %s: %w", TableName, err)
	}
	if final.Handle == 0 {
		return fmt.Errorf("install table inet %s: kernel did not report the final rule's handle", TableName)
	}
	lay.finalHandle = final.Handle
	f.lay, f.installed, f.known = lay, true, true
	f.cur = state{ids: map[uint32]*content{}}
	f.eknown, f.ecur = true, newEgressState()
	f.log.Info("nftables table installed", "table", "inet "+TableName, "interface", f.cfg.Interface, "recreated", exists)
	return nil
}

// isLegacy reports whether table t is the previous release's layout: chain
// mesh_in and the per-source sets allow4 and allow6r_000 (shards).
func (f *Firewall) isLegacy(t *nftables.Table) (bool, error) {
	sets, err := f.conn.GetSets(t)
	if err != nil {
		return false, fmt.Errorf("list sets: %w", err)
	}
	names := map[string]bool{}
	for _, s := range sets {
		names[s.Name] = true
	}
	chains, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list chains: %w", err)
	}
	meshIn := false
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == TableName && c.Name == chainMeshIn {
			meshIn = true
		}
	}
	return meshIn && names["allow4"] && names["allow6"] && names["allow4r_000"] && names["ranges4"], nil
}

// keep adopts an existing table whose layout matches; it switches the final
// rule and egress's out_deny to enforce mode.
func (f *Firewall) keep(lay *layout, finalHandle uint64, audit bool) error {
	lay.finalHandle = finalHandle
	if audit {
		f.conn.ReplaceRule(&nftables.Rule{Table: lay.table, Chain: lay.meshIn, Handle: finalHandle, Exprs: finalExprs(false)})
	}
	// Egress too (its mode is its own chain's): the rest of egress keeps
	// enforcing until the first ApplyEgress rewrites it.
	deny, err := f.conn.GetRules(lay.table, lay.outDeny)
	if err != nil {
		return fmt.Errorf("list rules of chain %s: %w", chainOutDeny, err)
	}
	egressAudit := !sameRules(deny, outDenyRules(false))
	if egressAudit {
		f.conn.FlushChain(lay.outDeny)
		lay.addRules(f.conn, lay.outDeny, outDenyRules(false))
	}
	if audit || egressAudit {
		if err := f.conn.Flush(); err != nil {
			return fmt.Errorf("switch kept table inet %s to enforce mode: %w", TableName, err)
		}
	}
	f.lay, f.installed, f.known = lay, true, false
	f.log.Info("nftables table kept from a previous run", "table", "inet "+TableName, "was_audit", audit)
	return nil
}

// inspect compares the existing table with lay. why is empty when they match;
// then finalHandle and audit describe the final rule of mesh_in.
func (f *Firewall) inspect(lay *layout) (finalHandle uint64, audit bool, why string, err error) {
	chains, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return 0, false, "", fmt.Errorf("list chains: %w", err)
	}
	var mine []*nftables.Chain
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != TableName {
			continue
		}
		_, isID := parseIDChain(c.Name)
		if isID || isLocalChain(c.Name) {
			if c.Hooknum != nil {
				return 0, false, "identity chain " + c.Name + " is a base chain", nil
			}
			continue
		}
		mine = append(mine, c)
	}
	if why := compareChains(mine, lay); why != "" {
		return 0, false, why, nil
	}
	sets, err := f.conn.GetSets(lay.table)
	if err != nil {
		return 0, false, "", fmt.Errorf("list sets: %w", err)
	}
	if why := compareSets(sets, lay); why != "" {
		return 0, false, why, nil
	}
	objs, err := f.conn.GetNamedObjects(lay.table)
	if err != nil {
		return 0, false, "", fmt.Errorf("list objects: %w", err)
	}
	if len(objs) != 1 {
		return 0, false, fmt.Sprintf("%d stateful objects, want 1", len(objs)), nil
	}
	if o, ok := objs[0].(*nftables.NamedObj); !ok || o.Name != counterFinal || o.Type != nftables.ObjTypeCounter {
		return 0, false, "stateful object is not counter " + counterFinal, nil
	}
	want := lay.rules(f.cfg, false)
	var got []*nftables.Rule
	for _, c := range lay.ruleChains() {
		rules, err := f.conn.GetRules(lay.table, c)
		if err != nil {
			return 0, false, "", fmt.Errorf("list rules of chain %s: %w", c.Name, err)
		}
		got = append(got, rules...)
	}
	if len(got) != len(want) {
		return 0, false, fmt.Sprintf("%d rules, want %d", len(got), len(want)), nil
	}
	for i, w := range want {
		g := got[i]
		if g.Chain == nil || g.Chain.Name != w.chain.Name {
			return 0, false, fmt.Sprintf("rule %d is not in chain %s", i, w.chain.Name), nil
		}
		if w.final {
			switch {
			case sameExprs(g.Exprs, finalExprs(false)):
			case sameExprs(g.Exprs, finalExprs(true)):
				audit = true
			default:
				return 0, false, "final rule of mesh_in differs", nil
			}
			finalHandle = g.Handle
			continue
		}
		if !sameExprs(g.Exprs, dumped(w.exprs)) {
			return 0, false, fmt.Sprintf("rule %d of chain %s differs", i, w.chain.Name), nil
		}
	}
	return finalHandle, audit, "", nil
}

func compareChains(got []*nftables.Chain, lay *layout) string {
	want := lay.chains()
	if len(got) != len(want) {
		return fmt.Sprintf("%d chains, want %d", len(got), len(want))
	}
	byName := make(map[string]*nftables.Chain, len(got))
	for _, c := range got {
		if byName[c.Name] != nil {
			return "duplicate chain " + c.Name
		}
		byName[c.Name] = c
	}
	for _, w := range want {
		c := byName[w.Name]
		switch {
		case c == nil:
			return "no chain " + w.Name
		case w.Hooknum == nil:
			if c.Hooknum != nil {
				return "chain " + c.Name + " is a base chain"
			}
		case c.Type != w.Type || c.Hooknum == nil || *c.Hooknum != *w.Hooknum ||
			c.Priority == nil || *c.Priority != *w.Priority || c.Policy == nil || *c.Policy != *w.Policy:
			return "chain " + c.Name + " has another type, hook, priority or policy"
		}
	}
	return ""
}

// identitySet returns the identity set of that name as the layout makes it,
// nil when name is not one (id_N_p, id_N_r, id_N_s4, id_N_s6).
func identitySet(lay *layout, name string) *nftables.Set {
	for i, suffix := range idSetSuffixes {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if id, ok := parseIDChain(base); ok {
				return lay.allIdentitySets(id)[i]
			}
		}
	}
	return nil
}

func compareSets(got []*nftables.Set, lay *layout) string {
	n := 0
	for _, s := range got {
		if w, ok := lay.sets[s.Name]; ok {
			n++
			// The library does not decode a set's own expressions (the seen
			// sets' counter); the update rules that use them are compared.
			if s.KeyType.Name != w.KeyType.Name || s.KeyType.Bytes != w.KeyType.Bytes ||
				s.Interval != w.Interval || s.Concatenation != w.Concatenation ||
				s.Constant != w.Constant || s.Anonymous || s.IsMap != w.IsMap || s.DataType.Name != w.DataType.Name ||
				s.HasTimeout != w.HasTimeout || s.Dynamic != w.Dynamic || s.Timeout != w.Timeout || s.Size != w.Size {
				return "set " + s.Name + " has another type, flags, timeout or size"
			}
			continue
		}
		if isEgressName(s.Name) {
			continue // rebuilt by the first ApplyEgress
		}
		w := identitySet(lay, s.Name)
		if w == nil {
			return "unknown set " + s.Name
		}
		if s.KeyType.Name != w.KeyType.Name || s.Interval != w.Interval || s.Concatenation != w.Concatenation || s.IsMap || s.Anonymous {
			return "set " + s.Name + " has another type or flags"
		}
	}
	if n != len(lay.sets) {
		return fmt.Sprintf("%d of the %d fixed sets", n, len(lay.sets))
	}
	return ""
}

// dumped returns exprs as the kernel dumps them back: a dynset that
// updates a set carrying its own expressions (the seen sets' counter) is
// dumped without them, so `update @seen4 { ip saddr counter }` reads back as
// `update @seen4 { ip saddr }`. A dynset read back with its counter therefore
// reveals a seen set without one (a foreign layout). The library does not
// decode a set's expressions, so which expression the set carries is not
// checked beyond that.
func dumped(exprs []expr.Any) []expr.Any {
	out := slices.Clone(exprs)
	for i, e := range out {
		if d, ok := e.(*expr.Dynset); ok && len(d.Exprs) > 0 {
			c := *d
			c.Exprs = nil
			out[i] = &c
		}
	}
	return out
}

// sameExprs compares expressions by their netlink encoding, ignoring what
// the kernel fills in (counter values, set transaction IDs).
func sameExprs(a, b []expr.Any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, errX := canonExpr(a[i])
		y, errY := canonExpr(b[i])
		if errX != nil || errY != nil || !bytes.Equal(x, y) {
			return false
		}
	}
	return true
}

func canonExpr(e expr.Any) ([]byte, error) {
	switch v := e.(type) {
	case *expr.Counter:
		e = &expr.Counter{}
	case *expr.Lookup:
		c := *v
		c.SetID = 0
		e = &c
	case *expr.Dynset:
		c := *v
		c.SetID = 0
		c.Exprs = make([]expr.Any, len(v.Exprs))
		for i, x := range v.Exprs {
			if _, ok := x.(*expr.Counter); ok {
				x = &expr.Counter{}
			}
			c.Exprs[i] = x
		}
		e = &c
	}
	return expr.Marshal(byte(nftables.TableFamilyINet), e)
}

func isNotExist(err error) bool { return errors.Is(err, unix.ENOENT) }
