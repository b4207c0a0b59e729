package acl

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

	// prerouting
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
	for _, fam := range []struct {
		v4                      bool
		local, allow, icmp, any string
		ranges                  string
		saddr, daddr, size      uint32
		icmpProto, echoRequest  uint8
	}{
		{true, setLocal4, setAllow4, setICMP4, setAny4, mapRanges4, 12, 16, 4, unix.IPPROTO_ICMP, 8},
		{false, setLocal6, setAllow6, setICMP6, setAny6, mapRanges6, 8, 24, 16, unix.IPPROTO_ICMPV6, 128},
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
		in(l.portMatch(fam.v4, fam.allow)...)
		// saddr & <rangeShards-1> vmap @ranges: jump to the source's shard.
		mask := make([]byte, fam.size)
		mask[fam.size-1] = rangeShards - 1
		in(guard(netHeader(fam.saddr, fam.size, 1),
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: fam.size, Mask: mask, Xor: make([]byte, fam.size)},
			&expr.Lookup{SourceRegister: 1, IsDestRegSet: true, DestRegister: 0, SetName: fam.ranges, SetID: l.sets[fam.ranges].ID})...)
		in(guard(netHeader(fam.saddr, fam.size, 1),
			l.lookup(fam.icmp, false),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam.icmpProto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam.echoRequest}},
			accept())...)
		in(guard(netHeader(fam.saddr, fam.size, 1),
			l.lookup(fam.any, false),
			accept())...)
	}
	in(&expr.Limit{Type: expr.LimitTypePkts, Rate: LogRate, Unit: expr.LimitTimeSecond, Burst: LogRate},
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN, Group: LogGroup, Snaplen: LogSnaplen})
	// Per-source counts of what reaches the final rule (see DeniedBySource).
	// The update takes the set's timeout and refreshes it on every packet.
	in(append(nfproto(netip.IPv4Unspecified()), netHeader(12, 4, 1), l.seenUpdate(setSeen4))...)
	in(append(nfproto(netip.IPv6Unspecified()), netHeader(8, 16, 1), l.seenUpdate(setSeen6))...)
	out = append(out, ruleSpec{chain: l.meshIn, exprs: finalExprs(audit), final: true})
	// The shard chains: one rule each.
	for f := range l.shards {
		for i, ch := range l.shards[f] {
			out = append(out, ruleSpec{chain: ch, exprs: l.portMatch(f == 0, shardNames[f][i])})
		}
	}
	return out
}

// portMatch is `ip saddr . meta l4proto . th dport @set accept` (ip6 when
// not v4).
func (l *layout) portMatch(v4 bool, set string) []expr.Any {
	// Registers of `meta l4proto` and `th dport` in the concatenation:
	// the 32-bit registers after the address (reg 1 = 32-bit registers
	// 8-11). The kernel reports the 32-bit register 12 as reg 2, so the
	// IPv6 layout names it that way to compare equal when read back.
	addr, saddr, size, protoReg, portReg := netip.IPv6Unspecified(), uint32(8), uint32(16), uint32(2), uint32(13)
	if v4 {
		addr, saddr, size, protoReg, portReg = netip.IPv4Unspecified(), 12, 4, 9, 10
	}
	return append(nfproto(addr),
		netHeader(saddr, size, 1),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
		&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		l.lookup(set, false),
		accept())
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
func drop() *expr.Verdict   { return &expr.Verdict{Kind: expr.VerdictDrop} }
