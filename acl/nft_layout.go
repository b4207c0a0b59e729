package acl

import (
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The layout of table inet segmesh (DESIGN.md "nftables", contract):
//
//	table inet segmesh {
//	  counter final
//	  set local4 { type ipv4_addr }       set local6 { type ipv6_addr }
//	  set allow4  { type ipv4_addr . inet_proto . inet_service }                  # single ports
//	  set allow6  { type ipv6_addr . inet_proto . inet_service }
//	  set allow4r { type ipv4_addr . inet_proto . inet_service; flags interval }  # port ranges
//	  set allow6r { type ipv6_addr . inet_proto . inet_service; flags interval }
//	  set icmp4  { type ipv4_addr }       set icmp6  { type ipv6_addr }
//	  set any4   { type ipv4_addr }       set any6   { type ipv6_addr }
//	  set seen4  { type ipv4_addr; size 65535; flags dynamic,timeout; counter; timeout 10m }
//	  set seen6  { type ipv6_addr; size 65535; flags dynamic,timeout; counter; timeout 10m }
//	  chain prerouting {
//	    type filter hook prerouting priority -150; policy accept;
//	    iifname MESH ct direction reply accept
//	    iifname MESH ct state related accept
//	    iifname MESH jump mesh_in
//	    iifname != "lo" ct direction reply ct status dnat accept
//	    iifname != "lo" ip saddr NET4 drop
//	    iifname != "lo" ip daddr NET4 drop
//	    iifname != "lo" ip6 saddr NET6 drop
//	    iifname != "lo" ip6 daddr NET6 drop
//	  }
//	  chain mesh_in {
//	    ip daddr != @local4 counter drop
//	    ip saddr . meta l4proto . th dport @allow4 accept
//	    ip saddr . meta l4proto . th dport @allow4r accept
//	    ip saddr @icmp4 icmp type echo-request accept
//	    ip saddr @any4 accept
//	    ip6 daddr != @local6 counter drop
//	    ip6 saddr . meta l4proto . th dport @allow6 accept
//	    ip6 saddr . meta l4proto . th dport @allow6r accept
//	    ip6 saddr @icmp6 icmpv6 type echo-request accept
//	    ip6 saddr @any6 accept
//	    limit rate 100/second burst 100 packets log group 8476 snaplen 128
//	    update @seen4 { ip saddr counter }
//	    update @seen6 { ip6 saddr counter }
//	    counter name "final" drop      # audit mode: accept
//	  }
//	}
//
// A port element covering one port goes to the exact-port set allow4/allow6
// (a hash set: cheap to insert into, nothing cloned on commit), a range to
// allow4r/allow6r (an interval set, the kernel's pipapo backend, whose
// commit copies its whole lookup structure). The layout before this split
// (allow4/allow6 as interval sets holding both) is foreign to Install: it
// recreates the table.
//
// Every ip/ip6 match is preceded by `meta nfproto ipv4|ipv6`, as nft does in
// an inet table. mesh_in always ends in a verdict, so mesh traffic never
// reaches the underlay guard rules after the jump.
const (
	chainPrerouting = "prerouting"
	chainMeshIn     = "mesh_in"
	counterFinal    = "final"

	setLocal4  = "local4"
	setLocal6  = "local6"
	setAllow4  = "allow4"
	setAllow6  = "allow6"
	setAllow4R = "allow4r"
	setAllow6R = "allow6r"
	setICMP4   = "icmp4"
	setICMP6   = "icmp6"
	setAny4    = "any4"
	setAny6    = "any6"
	setSeen4   = "seen4"
	setSeen6   = "seen6"

	// seenSize bounds each seen set. When a set is full, its update rule
	// does nothing for new sources (the packet still meets the final rule):
	// such sources go uncounted per source, never unfiltered.
	seenSize = 65535

	// preroutingPriority: after conntrack (-200), before DNAT (-100).
	preroutingPriority nftables.ChainPriority = -150
)

// SeenTimeout is how long a source stays in the per-source counters of
// DeniedBySource after its last denied or audited packet: a source that
// stops sending (a departed peer) ages out, and its count starts again from
// zero if it comes back.
const SeenTimeout = 10 * time.Minute

// Indices of the managed sets in setNames (and elementSet, kinds).
const (
	sLocal4 = iota
	sLocal6
	sAllow4
	sAllow6
	sAllow4R
	sAllow6R
	sICMP4
	sICMP6
	sAny4
	sAny6
	numSets
)

// setNames lists the sets whose elements Apply manages, in creation order.
var setNames = []string{setLocal4, setLocal6, setAllow4, setAllow6, setAllow4R, setAllow6R, setICMP4, setICMP6, setAny4, setAny6}

// seenSetNames lists the dynamic sets the kernel fills (per-source counts of
// the packets that reach the final rule), created after setNames. Apply never
// touches their elements.
var seenSetNames = []string{setSeen4, setSeen6}

var (
	allowKey4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	allowKey6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
)

// layout holds the objects of table inet segmesh.
type layout struct {
	table      *nftables.Table
	prerouting *nftables.Chain
	meshIn     *nftables.Chain
	counter    *nftables.CounterObj
	sets       map[string]*nftables.Set
	// finalHandle is the kernel handle of the final rule of mesh_in, known
	// after the batch that created it was flushed (rule echo) or after
	// reading an existing table.
	finalHandle uint64
}

func newLayout() *layout {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	policy := nftables.ChainPolicyAccept
	l := &layout{
		table: t,
		prerouting: &nftables.Chain{
			Name:     chainPrerouting,
			Table:    t,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  nftables.ChainHookPrerouting,
			Priority: nftables.ChainPriorityRef(preroutingPriority),
			Policy:   &policy,
		},
		meshIn:  &nftables.Chain{Name: chainMeshIn, Table: t},
		counter: &nftables.CounterObj{Table: t, Name: counterFinal},
		sets:    make(map[string]*nftables.Set, len(setNames)+len(seenSetNames)),
	}
	for _, name := range seenSetNames {
		l.sets[name] = &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIPAddr,
			Dynamic: true, HasTimeout: true, Timeout: SeenTimeout, Counter: true, Size: seenSize}
	}
	l.sets[setSeen6].KeyType = nftables.TypeIP6Addr
	for _, name := range setNames {
		s := &nftables.Set{Table: t, Name: name}
		switch name {
		case setLocal4, setICMP4, setAny4:
			s.KeyType = nftables.TypeIPAddr
		case setLocal6, setICMP6, setAny6:
			s.KeyType = nftables.TypeIP6Addr
		case setAllow4:
			s.KeyType, s.Concatenation = allowKey4, true
		case setAllow6:
			s.KeyType, s.Concatenation = allowKey6, true
		case setAllow4R:
			s.KeyType, s.Interval, s.Concatenation = allowKey4, true, true
		case setAllow6R:
			s.KeyType, s.Interval, s.Concatenation = allowKey6, true, true
		}
		l.sets[name] = s
	}
	return l
}

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
		v4                              bool
		local, allow, ranges, icmp, any string
		saddr, daddr, size              uint32
		icmpProto, echoRequest          uint8
		// Registers of `meta l4proto` and `th dport` in the concatenation:
		// the 32-bit registers after the address (reg 1 = 32-bit registers
		// 8-11). The kernel reports the 32-bit register 12 as reg 2, so the
		// IPv6 layout names it that way to compare equal when read back.
		protoReg, portReg uint32
	}{
		{true, setLocal4, setAllow4, setAllow4R, setICMP4, setAny4, 12, 16, 4, unix.IPPROTO_ICMP, 8, 9, 10},
		{false, setLocal6, setAllow6, setAllow6R, setICMP6, setAny6, 8, 24, 16, unix.IPPROTO_ICMPV6, 128, 2, 13},
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
		for _, set := range []string{fam.allow, fam.ranges} {
			in(guard(netHeader(fam.saddr, fam.size, 1),
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: fam.protoReg},
				&expr.Payload{DestRegister: fam.portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				l.lookup(set, false),
				accept())...)
		}
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

// addAll queues the whole table (empty sets, final rule per audit) on c. The caller
// flushes; the final rule's handle is then in the returned rule.
func (l *layout) addAll(c *nftables.Conn, cfg Config, audit bool) (final *nftables.Rule, err error) {
	c.AddTable(l.table)
	c.AddChain(l.prerouting)
	c.AddChain(l.meshIn)
	c.AddObj(l.counter)
	for _, name := range append(setNames[:len(setNames):len(setNames)], seenSetNames...) {
		if err := c.AddSet(l.sets[name], nil); err != nil {
			return nil, err
		}
	}
	for _, r := range l.rules(cfg, audit) {
		rule := c.AddRule(&nftables.Rule{Table: l.table, Chain: r.chain, Exprs: r.exprs})
		if r.final {
			final = rule
		}
	}
	return final, nil
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
