package nft

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/segmesh/segmesh/acl"
)

// readIdentity reads the content of identity id's chain and port sets
// from the kernel. It returns nil (content not known: the next Apply
// rewrites the identity) when the chain's rules are not exactly what
// identityRules makes of the sets' elements.
func (f *Firewall) readIdentity(id uint32) (*content, error) {
	p, r := f.lay.identitySets(id)
	c := &content{}
	for _, s := range []*nftables.Set{p, r} {
		elems, err := f.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		for _, e := range elems {
			end := e.Key
			if s.Interval {
				end = e.KeyEnd
			}
			proto, lo, ok1 := portKeyOf(e.Key)
			endProto, hi, ok2 := portKeyOf(end)
			if !ok1 || !ok2 || proto != endProto || lo > hi || (!s.Interval && len(e.KeyEnd) > 0) {
				return nil, nil
			}
			switch proto {
			case acl.ProtoTCP:
				c.tcp = append(c.tcp, acl.PortRange{Lo: lo, Hi: hi})
			case acl.ProtoUDP:
				c.udp = append(c.udp, acl.PortRange{Lo: lo, Hi: hi})
			default:
				return nil, nil
			}
		}
	}
	byLo := func(a, b acl.PortRange) int { return int(a.Lo) - int(b.Lo) }
	slices.SortFunc(c.tcp, byLo)
	slices.SortFunc(c.udp, byLo)
	rules, err := f.conn.GetRules(f.lay.table, &nftables.Chain{Table: f.lay.table, Name: idChain(id)})
	if err != nil {
		return nil, fmt.Errorf("list rules of chain %s: %w", idChain(id), err)
	}
	for _, flags := range []struct{ icmp, any bool }{{false, false}, {true, false}, {false, true}} {
		if sameRules(rules, identityRules(p, r, flags.icmp, flags.any)) {
			c.icmp, c.any = flags.icmp, flags.any
			if c.any && len(c.tcp)+len(c.udp) > 0 {
				return nil, nil // Apply never writes ports with any
			}
			return c, nil
		}
	}
	return nil, nil
}

// readOrder reads the identity order of the dispatch chains; nil when
// they are not exactly one dispatch rule per identity of ids, in the same
// order in both.
func (f *Firewall) readOrder(ids map[uint32]*content) ([]uint32, error) {
	var order []uint32
	for fa, chain := range f.lay.src {
		rules, err := f.conn.GetRules(f.lay.table, chain)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", chain.Name, err)
		}
		if len(rules) != len(ids) {
			return nil, nil
		}
		for i, rule := range rules {
			var id uint32
			if fa == 0 {
				id = gotoTarget(rule)
				if _, ok := ids[id]; !ok || slices.Contains(order, id) {
					return nil, nil
				}
				order = append(order, id)
			} else {
				id = order[i]
			}
			if !sameExprs(rule.Exprs, dispatchRule(f.lay.sourceSet(id, fa), id, fa)) {
				return nil, nil
			}
		}
	}
	return order, nil
}

// gotoTarget returns the identity a dispatch rule goes to (0: none).
func gotoTarget(r *nftables.Rule) uint32 {
	if len(r.Exprs) == 0 {
		return 0
	}
	v, ok := r.Exprs[len(r.Exprs)-1].(*expr.Verdict)
	if !ok || v.Kind != expr.VerdictGoto {
		return 0
	}
	id, _ := parseIDChain(v.Chain)
	return id
}

// portKeyOf decodes a `proto . port` key as portElements writes it.
func portKeyOf(k []byte) (proto uint8, port uint16, ok bool) {
	if len(k) != 8 {
		return 0, 0, false
	}
	return k[0], uint16(k[4])<<8 | uint16(k[5]), true
}

// sameRules compares a chain's rules with the expressions Apply writes.
func sameRules(got []*nftables.Rule, want [][]expr.Any) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !sameExprs(got[i].Exprs, want[i]) {
			return false
		}
	}
	return true
}
