package nft

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ruleSpec is one rule of the layout, in chain order.
type ruleSpec struct {
	chain *nftables.Chain
	exprs []expr.Any
	final bool // the final verdict rule of mesh_in
}

// rules returns the rules of the layout for cfg and mode. Lookups name their
// set and carry the set's transaction ID (zero when the set was not added in
// the current batch).
func (l *layout) rules(cfg Config, audit bool) []ruleSpec {
	mesh := ifname(cfg.Interface)
	lo := ifname("lo")
	var out []ruleSpec
	pre := func(e ...expr.Any) { out = append(out, ruleSpec{chain: l.prerouting, exprs: e}) }
	in := func(e ...expr.Any) { out = append(out, ruleSpec{chain: l.meshIn, exprs: e}) }
	onMesh := func(e ...expr.Any) []expr.Any { return append(iifname(expr.CmpOpEq, mesh), e...) }

	// prerouting: quarantine first, every packet (quarantine.go)
	pre(onMesh(&expr.Verdict{Kind: expr.VerdictJump, Chain: chainQIn})...)
	pre(onMesh(
		&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{expr.CtDirReply}},
		accept())...)
	pre(onMesh(
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitRELATED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		accept())...)
	pre(onMesh(&expr.Verdict{Kind: expr.VerdictJump, Chain: chainMeshIn})...)
	// Replies of port-forwarded connections come back from the container's
	// interface addressed to the peer's overlay address. Such a conntrack
	// entry only exists for a flow mesh_in admitted, so the underlay guard
	// below does not apply to them (the contract's "forwarding into
	// containers" case).
	pre(append(iifname(expr.CmpOpNeq, lo),
		&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{expr.CtDirReply}},
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		accept())...)
	for _, g := range []struct {
		net    netip.Prefix
		offset uint32 // saddr; daddr follows it
	}{{cfg.Network4, 12}, {cfg.Network6, 8}} {
		size := uint32(g.net.Addr().BitLen() / 8)
		for _, off := range []uint32{g.offset, g.offset + size} {
			e := iifname(expr.CmpOpNeq, lo)
			e = append(e, nfproto(g.net.Addr())...)
			e = append(e, netHeader(off, size, 1))
			e = append(e, prefixMatch(g.net)...)
			pre(append(e, drop())...)
		}
	}

	// mesh_in, one block per family
	for f, fam := range []struct {
		v4          bool
		local       string
		daddr, size uint32
	}{
		{true, setLocal4, 16, 4},
		{false, setLocal6, 24, 16},
	} {
		addr := netip.IPv6Unspecified()
		if fam.v4 {
			addr = netip.IPv4Unspecified()
		}
		guard := func(e ...expr.Any) []expr.Any { return append(nfproto(addr), e...) }
		in(guard(netHeader(fam.daddr, fam.size, 1),
			l.lookup(fam.local, true),
			&expr.Counter{},
			drop())...)
		// The source's identity chain, through the dispatch chain.
		in(guard(&expr.Verdict{Kind: expr.VerdictJump, Chain: l.src[f].Name})...)
	}
	in(&expr.Limit{Type: expr.LimitTypePkts, Rate: LogRate, Unit: expr.LimitTimeSecond, Burst: LogRate},
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN, Group: LogGroup, Snaplen: LogSnaplen})
	// Per-source counts of what reaches the final rule (see DeniedBySource).
	// The update takes the set's timeout and refreshes it on every packet.
	in(append(nfproto(netip.IPv4Unspecified()), netHeader(12, 4, 1), l.seenUpdate(setSeen4))...)
	in(append(nfproto(netip.IPv6Unspecified()), netHeader(8, 16, 1), l.seenUpdate(setSeen6))...)
	out = append(out, ruleSpec{chain: l.meshIn, exprs: finalExprs(audit), final: true})
	for _, e := range l.allowInRules() {
		out = append(out, ruleSpec{chain: l.allowIn, exprs: e})
	}
	for _, e := range l.quarantineRules(true) {
		out = append(out, ruleSpec{chain: l.qIn, exprs: e})
	}
	for _, e := range l.quarantineRules(false) {
		out = append(out, ruleSpec{chain: l.qOut, exprs: e})
	}
	return out
}

// dispatchRule is the rule of chain src4 (f 0) or src6 (f 1) for identity
// id: `ip saddr @id_N_s4 goto id_N`. set is the identity's source set
// (possibly added in the same batch).
func dispatchRule(set *nftables.Set, id uint32, f int) []expr.Any {
	addr, off, size := netip.IPv4Unspecified(), uint32(12), uint32(4)
	if f == 1 {
		addr, off, size = netip.IPv6Unspecified(), 8, 16
	}
	return append(nfproto(addr), netHeader(off, size, 1),
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Verdict{Kind: expr.VerdictGoto, Chain: idChain(id)})
}

// identityRules returns the rules of the chain of identity id: its port
// sets (ports and ranges are set objects, possibly added in the same batch),
// then echo requests when icmp, then everything when any; each admits by
// going to allow_in.
func identityRules(ports, ranges *nftables.Set, icmp, any bool) [][]expr.Any {
	match := func(s *nftables.Set) []expr.Any {
		// meta l4proto . th dport: the protocol in the first 32-bit
		// register of reg 1, the port in the next one (reg 9).
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
			allowed(),
		}
	}
	out := [][]expr.Any{match(ports), match(ranges)}
	if icmp {
		for _, f := range []struct {
			addr          netip.Addr
			proto, echoRq uint8
		}{{netip.IPv4Unspecified(), unix.IPPROTO_ICMP, 8}, {netip.IPv6Unspecified(), unix.IPPROTO_ICMPV6, 128}} {
			out = append(out, append(nfproto(f.addr),
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.echoRq}},
				allowed()))
		}
	}
	if any {
		out = append(out, []expr.Any{allowed()})
	}
	return out
}

// finalExprs is the final rule of mesh_in: the only rule that differs
// between enforce and audit mode.
func finalExprs(audit bool) []expr.Any {
	v := drop()
	if audit {
		v = accept()
	}
	return []expr.Any{&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: counterFinal}, v}
}

func (l *layout) lookup(set string, invert bool) *expr.Lookup {
	s := l.sets[set]
	return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: invert}
}

// seenUpdate is `update @set { <reg 1> counter }`.
func (l *layout) seenUpdate(set string) *expr.Dynset {
	s := l.sets[set]
	return &expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID, Operation: unix.NFT_DYNSET_OP_UPDATE,
		Exprs: []expr.Any{&expr.Counter{}}}
}

func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func iifname(op expr.CmpOp, name []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: name},
	}
}

func nfproto(a netip.Addr) []expr.Any {
	p := byte(unix.NFPROTO_IPV6)
	if a.Is4() {
		p = unix.NFPROTO_IPV4
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func netHeader(offset, size, reg uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size}
}

// prefixMatch compares register 1 (holding an address) with p.
func prefixMatch(p netip.Prefix) []expr.Any {
	size := p.Addr().BitLen() / 8
	mask := make([]byte, size)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(size), Mask: mask, Xor: make([]byte, size)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

// ctStatusDNAT is IPS_DST_NAT of the conntrack status bits.
const ctStatusDNAT = 1 << 5

func accept() *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictAccept} }

// allowed is an identity's accept: through chain allow_in, which observes.
func allowed() *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainAllowIn} }
func drop() *expr.Verdict    { return &expr.Verdict{Kind: expr.VerdictDrop} }
