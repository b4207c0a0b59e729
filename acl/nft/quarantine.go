package nft

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Quarantine (DESIGN.md "Quarantine") is enforced ahead of everything else
// on the mesh interface, by chain q_in (jumped to first from prerouting)
// and q_out (first from output), over fixed sets the node fills:
//
//	set q_drop4/6  quarantined nodes this node may not reach: all dropped
//	set q_fore4/6  quarantined nodes this node may reach (it is in their
//	               --allow-from segments): only its own connections and
//	               their replies pass
//	set q_self4/6  this node's own addresses while it is quarantined
//	set q_from4/6 while it is quarantined: the members of the segments
//	               allowed to reach it
//	chain q_in {
//	  ip saddr @q_drop4 counter drop
//	  ip saddr @q_fore4 ct direction original counter drop
//	  ip daddr @q_self4 ip saddr != @q_from4 counter drop
//	  ip daddr @q_self4 ct direction reply counter drop
//	  (the same for ip6)
//	}
//	chain q_out {
//	  ip daddr @q_drop4 counter drop
//	  ip daddr @q_fore4 ct direction reply counter drop
//	  ip saddr @q_self4 ip daddr != @q_from4 counter drop
//	  ip saddr @q_self4 ct direction original counter drop
//	  (the same for ip6)
//	}
//
// Every packet is checked (the rules come before the conntrack accepts), so
// established flows stop with the next packet. The counters are
// segmesh_packets_quarantined_total.
const (
	chainQIn  = "q_in"
	chainQOut = "q_out"
)

// Quarantine is what ApplyQuarantine enforces (addresses of both families).
type Quarantine struct {
	Drop     []netip.Addr // quarantined nodes this node may not reach
	Forensic []netip.Addr // quarantined nodes this node may reach (allow-from)
	Self     []netip.Addr // this node's addresses when it is quarantined
	Allow    []netip.Addr // when it is: the allow-from segments' members
}

// quarantineSets names the fixed sets per family (IPv4 first).
var quarantineSets = [4][2]string{
	{"q_drop4", "q_drop6"}, {"q_fore4", "q_fore6"}, {"q_self4", "q_self6"}, {"q_from4", "q_from6"},
}

func quarantineSetDefs(t *nftables.Table) map[string]*nftables.Set {
	out := map[string]*nftables.Set{}
	for _, pair := range quarantineSets {
		out[pair[0]] = &nftables.Set{Table: t, Name: pair[0], KeyType: nftables.TypeIPAddr}
		out[pair[1]] = &nftables.Set{Table: t, Name: pair[1], KeyType: nftables.TypeIP6Addr}
	}
	return out
}

func quarantineSetNames() []string {
	var out []string
	for _, pair := range quarantineSets {
		out = append(out, pair[0], pair[1])
	}
	return out
}

// quarantineRules returns the rules of q_in (in) or q_out.
func (l *layout) quarantineRules(in bool) [][]expr.Any {
	var out [][]expr.Any
	dirOrig, dirReply := []byte{expr.CtDirOriginal}, []byte{expr.CtDirReply}
	for f, fam := range []struct {
		addr             netip.Addr
		saddr, daddr, sz uint32
	}{{netip.IPv4Unspecified(), 12, 16, 4}, {netip.IPv6Unspecified(), 8, 24, 16}} {
		peer, self := fam.saddr, fam.daddr // q_in: the peer is the source
		if !in {
			peer, self = fam.daddr, fam.saddr
		}
		set := func(i int) string { return quarantineSets[i][f] }
		rule := func(e ...expr.Any) {
			out = append(out, append(append(nfproto(fam.addr), e...), &expr.Counter{}, drop()))
		}
		ct := func(dir []byte) []expr.Any {
			return []expr.Any{&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dir}}
		}
		fore, selfDir := dirOrig, dirReply // q_in: the peer's own connections, replies to this node's
		if !in {
			fore, selfDir = dirReply, dirOrig
		}
		rule(netHeader(peer, fam.sz, 1), l.lookup(set(0), false))
		rule(append([]expr.Any{netHeader(peer, fam.sz, 1), l.lookup(set(1), false)}, ct(fore)...)...)
		rule(netHeader(self, fam.sz, 1), l.lookup(set(2), false), netHeader(peer, fam.sz, 1), l.lookup(set(3), true))
		rule(append([]expr.Any{netHeader(self, fam.sz, 1), l.lookup(set(2), false)}, ct(selfDir)...)...)
	}
	return out
}

// ApplyQuarantine writes q into the quarantine sets in one batch (the
// rules are fixed). Call it after Install and the first Apply.
func (f *Firewall) ApplyQuarantine(q Quarantine) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed || f.legacy {
		return fmt.Errorf("apply quarantine: table inet %s not installed in this layout", TableName)
	}
	lay := f.lay
	for i, addrs := range [][]netip.Addr{q.Drop, q.Forensic, q.Self, q.Allow} {
		var el [2][]nftables.SetElement
		for _, a := range addrs {
			fam := 0
			if !a.Is4() {
				fam = 1
			}
			el[fam] = append(el[fam], nftables.SetElement{Key: a.AsSlice()})
		}
		for fam := range 2 {
			s := lay.sets[quarantineSets[i][fam]]
			f.conn.FlushSet(s)
			if len(el[fam]) > 0 {
				if err := f.conn.SetAddElements(s, el[fam]); err != nil {
					_ = f.conn.Flush()
					return fmt.Errorf("apply quarantine: set %s: %w", s.Name, err)
				}
			}
		}
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("apply quarantine: %w", err)
	}
	return nil
}

// QuarantineDropped returns the packets the quarantine rules dropped.
func (f *Firewall) QuarantineDropped() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed || f.legacy {
		return 0, nil
	}
	var sum uint64
	for _, ch := range []*nftables.Chain{f.lay.qIn, f.lay.qOut} {
		rules, err := f.conn.GetRules(f.lay.table, ch)
		if err != nil {
			return 0, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if c, ok := e.(*expr.Counter); ok {
					sum += c.Packets
				}
			}
		}
	}
	return sum, nil
}
