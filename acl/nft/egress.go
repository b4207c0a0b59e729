package nft

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/segmesh/segmesh/acl"
)

// The egress part of table inet segmesh (DESIGN.md "Workloads", egress at
// the sender):
//
//	chain output {
//	  type filter hook output priority 0; policy accept;
//	  oifname MESH jump mesh_out
//	}
//	chain mesh_out {                       # rewritten when cgroups or locals change
//	  ct direction reply accept
//	  ct state related accept
//	  meta l4proto tcp ct state new tcp flags & syn == 0 accept   # picked up mid-stream
//	  socket cgroupv2 level L <id> goto wl_NAME   # per workload cgroup, deepest level first
//	  goto out_node                               # every other process: the node's identity
//	}
//	chain out_node / wl_NAME {             # one per local identity
//	  ip daddr @dst_D_4 accept                                   # destination D: anything
//	  ip daddr @dst_D_4 meta l4proto . th dport @wl_NAME_Dp accept   # single ports
//	  ip daddr @dst_D_4 meta l4proto . th dport @wl_NAME_Dr accept   # port ranges
//	  ip daddr @dst_D_4 meta l4proto icmp icmp type echo-request accept
//	  ... the same for ip6 and dst_D_6 ...
//	  limit rate 100/second burst 100 packets log prefix "segmesh-out:NAME" group 8476 snaplen 128
//	  update @wl_NAME_seen4 { ip daddr counter }   update @wl_NAME_seen6 { ip6 daddr counter }
//	  goto out_deny
//	}
//	chain out_deny {
//	  meta l4proto tcp reject with tcp reset       # enforce mode; audit mode: accept
//	  reject with icmpx admin-prohibited
//	}
//	set dst_D_4 { type ipv4_addr }  set dst_D_6 { type ipv6_addr }   # destination identity D's addresses
//
// A destination identity D is the exact set of segments a peer is in; a
// peer joining is one element of dst_D_4 and dst_D_6. Everything else (the
// local chains, their port sets, mesh_out) is small and rewritten in one
// batch when the policy, the destination identities, the local
// identities or their cgroups change. A socket keeps the cgroup it was
// created in: `socket cgroupv2` matches the socket's cgroup, not the
// process's current one. Packets without a full socket (time-wait ACKs,
// the kernel's own) have the node's identity.
const (
	chainOutput  = "output"
	chainMeshOut = "mesh_out"
	chainOutDeny = "out_deny"
	chainOutNode = "out_node"
	wlPrefix     = "wl_"
	dstPrefix    = "dst_"

	// LogPrefixOut starts the NFLOG prefix of egress denials; the local
	// workload's name follows ("" for the node's identity).
	LogPrefixOut = "segmesh-out:"

	// MaxCgroupLevel is the deepest cgroup level socket cgroupv2 matches
	// here (the kernel allows up to 255).
	MaxCgroupLevel = 255
)

// Egress is what ApplyEgress enforces: the local identities and where the
// destinations are.
type Egress struct {
	// Locals: the node's identity first (Name ""), then each workload.
	Locals []EgressLocal
	// Destinations maps each admitted peer address to its destination
	// identity (acl.Egress.Destinations), strictly sorted by address.
	Destinations []acl.Source
	// DestIDs are the destination identities (acl.Egress.DestSegments'
	// keys); nil: those of Destinations and the grants.
	DestIDs []uint32
	Audit   bool
}

// destIDs is the set of destination identities that get sets.
func (e Egress) destIDs() map[uint32]bool {
	ids := map[uint32]bool{}
	for _, id := range e.DestIDs {
		ids[id] = true
	}
	if e.DestIDs == nil {
		last := uint32(0)
		for _, d := range e.Destinations {
			if d.ID != last {
				ids[d.ID], last = true, d.ID
			}
		}
	}
	for _, l := range e.Locals {
		for _, g := range l.Grants {
			ids[g.Dest] = true
		}
	}
	return ids
}

// EgressLocal is one local identity: its cgroups (none for the node's
// identity, or for a workload whose cgroup is missing) and its grants by
// destination identity.
type EgressLocal struct {
	Name    string
	Cgroups []Cgroup
	Grants  []acl.Grant
}

// Cgroup is one cgroup v2 of a workload: its id and level below the root.
type Cgroup struct {
	ID    uint64
	Level int
}

// FromACL builds the Egress of e with the cgroups of each workload
// (missing workloads have none: their processes do not exist).
func FromACL(e acl.Egress, cgroups map[string][]Cgroup, audit bool) Egress {
	out := Egress{Destinations: e.Destinations, Audit: audit, Locals: make([]EgressLocal, len(e.Locals)),
		DestIDs: slices.Sorted(maps.Keys(e.DestSegments))}
	for i, l := range e.Locals {
		out.Locals[i] = EgressLocal{Name: l.Workload, Grants: l.Grants}
		if l.Workload != "" {
			out.Locals[i].Cgroups = cgroups[l.Workload]
		}
	}
	return out
}

func (e Egress) validate() error {
	if len(e.Locals) == 0 || e.Locals[0].Name != "" {
		return fmt.Errorf("egress: the node's identity must come first")
	}
	if !slices.IsSorted(e.DestIDs) {
		return fmt.Errorf("egress: DestIDs not sorted")
	}
	seen := map[string]bool{}
	for i, l := range e.Locals {
		if i > 0 && (l.Name == "" || strings.ContainsAny(l.Name, "_ \"") || len(l.Name) > 32) {
			return fmt.Errorf("egress: workload name %q", l.Name)
		}
		if seen[l.Name] {
			return fmt.Errorf("egress: workload %q twice", l.Name)
		}
		seen[l.Name] = true
		if i == 0 && len(l.Cgroups) > 0 {
			return fmt.Errorf("egress: the node's identity has no cgroup")
		}
		for _, c := range l.Cgroups {
			if c.Level < 1 || c.Level > MaxCgroupLevel || c.ID == 0 {
				return fmt.Errorf("egress: workload %q: cgroup id %d at level %d", l.Name, c.ID, c.Level)
			}
		}
		for j, g := range l.Grants {
			if g.Dest == 0 || (j > 0 && l.Grants[j-1].Dest >= g.Dest) {
				return fmt.Errorf("egress: %q: grants not strictly sorted by destination", l.Name)
			}
			for _, rs := range [][]acl.PortRange{g.TCP, g.UDP} {
				if _, err := cleanRanges(rs); err != nil {
					return fmt.Errorf("egress: %q: %w", l.Name, err)
				}
			}
		}
	}
	for i, d := range e.Destinations {
		if d.ID == 0 || !d.Addr.IsValid() || d.Addr.Zone() != "" || d.Addr.Is4In6() {
			return fmt.Errorf("egress: destination %v of identity %d", d.Addr, d.ID)
		}
		if e.DestIDs != nil {
			if _, ok := slices.BinarySearch(e.DestIDs, d.ID); !ok {
				return fmt.Errorf("egress: destination %v: identity %d not in DestIDs", d.Addr, d.ID)
			}
		}
		if i > 0 && e.Destinations[i-1].Addr.Compare(d.Addr) >= 0 {
			return fmt.Errorf("egress: destinations not strictly sorted")
		}
	}
	return nil
}

// localChain names the chain of a local identity.
func localChain(name string) string {
	if name == "" {
		return chainOutNode
	}
	return wlPrefix + name
}

func dstSet(d uint32, f int) string {
	return dstPrefix + strconv.FormatUint(uint64(d), 10) + [2]string{"_4", "_6"}[f]
}

func grantSet(local string, d uint32, ranges bool) string {
	s := localChain(local) + "_" + strconv.FormatUint(uint64(d), 10) + "p"
	if ranges {
		s = s[:len(s)-1] + "r"
	}
	return s
}

func seenSet(local string, f int) string { return localChain(local) + [2]string{"_seen4", "_seen6"}[f] }

// isEgressName reports whether a chain or set name belongs to the egress
// part of the table.
func isEgressName(name string) bool {
	return name == chainOutput || name == chainMeshOut || name == chainOutDeny ||
		strings.HasPrefix(name, "out_") || strings.HasPrefix(name, wlPrefix) || strings.HasPrefix(name, dstPrefix)
}

// egressChains are the fixed chains of the egress part, in creation order.
func (l *layout) egressChains() []*nftables.Chain {
	return []*nftables.Chain{l.outDeny, l.meshOut, l.output}
}

// outputRules are the rules of chain output.
// Quarantine comes first (quarantine.go).
func outputRules(cfg Config) [][]expr.Any {
	onMesh := func(to string) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(cfg.Interface)},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: to},
		}
	}
	return [][]expr.Any{onMesh(chainQOut), onMesh(chainMeshOut)}
}

// outDenyRules are the rules of chain out_deny for the mode.
func outDenyRules(audit bool) [][]expr.Any {
	if audit {
		return [][]expr.Any{{accept()}}
	}
	return [][]expr.Any{
		{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
		},
		{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}},
	}
}

// tcpFlagSYN is the SYN bit of the TCP flags byte.
const tcpFlagSYN = 0x02

// meshOutRules are the rules of chain mesh_out: replies, then the
// workloads' cgroups deepest first, then the node's identity. Without
// locals (before the first ApplyEgress) the rest is denied.
func meshOutRules(locals []EgressLocal) [][]expr.Any {
	out := [][]expr.Any{
		{
			&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{expr.CtDirReply}},
			accept(),
		},
		{
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitRELATED), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
			accept(),
		},
		// A TCP segment that is not a SYN but new to conntrack: a
		// connection picked up mid-stream after its entry went (the
		// daemon deletes a peer address's entries when the peer comes or
		// goes, e.g. at a restart). Its SYN passed long ago; rejecting it
		// now would reset a connection that was allowed, often one this
		// node accepted (its packets then replies). Data of a connection
		// whose entry still exists is checked below on every packet.
		{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFlagSYN}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
			accept(),
		},
	}
	type match struct {
		name string
		cg   Cgroup
	}
	if len(locals) == 0 {
		return append(out, []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: chainOutDeny}})
	}
	var ms []match
	for _, l := range locals[1:] {
		for _, c := range l.Cgroups {
			ms = append(ms, match{l.Name, c})
		}
	}
	slices.SortStableFunc(ms, func(a, b match) int { return b.cg.Level - a.cg.Level })
	for _, m := range ms {
		out = append(out, []expr.Any{
			&expr.Socket{Key: expr.SocketKeyCgroupv2, Level: uint32(m.cg.Level), Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint64(nil, m.cg.ID)},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: localChain(m.name)},
		})
	}
	return append(out, []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: chainOutNode}})
}

// localRules are the rules of a local identity's chain. sets returns the
// grant set of that name (added in this batch or existing), nil when the
// grant has none of that kind.
func localRules(l EgressLocal, sets func(name string) *nftables.Set, seen func(f int) *nftables.Set) [][]expr.Any {
	var out [][]expr.Any
	fams := []struct {
		addr          netip.Addr
		off, size     uint32
		proto, echoRq uint8
	}{{netip.IPv4Unspecified(), 16, 4, unix.IPPROTO_ICMP, 8}, {netip.IPv6Unspecified(), 24, 16, unix.IPPROTO_ICMPV6, 128}}
	for _, g := range l.Grants {
		for f, fa := range fams {
			dst := func(e ...expr.Any) []expr.Any {
				ds := sets(dstSet(g.Dest, f))
				head := append(nfproto(fa.addr), netHeader(fa.off, fa.size, 1),
					&expr.Lookup{SourceRegister: 1, SetName: ds.Name, SetID: ds.ID})
				return append(head, e...)
			}
			if g.Any {
				out = append(out, dst(accept()))
				continue
			}
			for _, ranges := range []bool{false, true} {
				s := sets(grantSet(l.Name, g.Dest, ranges))
				if s == nil {
					continue
				}
				out = append(out, dst(
					&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
					&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
					&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
					accept()))
			}
			if g.ICMP {
				out = append(out, dst(
					&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fa.proto}},
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fa.echoRq}},
					accept()))
			}
		}
	}
	out = append(out, []expr.Any{
		&expr.Limit{Type: expr.LimitTypePkts, Rate: LogRate, Unit: expr.LimitTimeSecond, Burst: LogRate},
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN | 1<<unix.NFTA_LOG_PREFIX,
			Group: LogGroup, Snaplen: LogSnaplen, Data: []byte(LogPrefixOut + l.Name)},
	})
	for f, fa := range fams {
		s := seen(f)
		out = append(out, append(nfproto(fa.addr), netHeader(fa.off, fa.size, 1),
			&expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID, Operation: unix.NFT_DYNSET_OP_UPDATE,
				Exprs: []expr.Any{&expr.Counter{}}}))
	}
	return append(out, []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: chainOutDeny}})
}

// grantElements returns the port elements of a grant (see portElements).
func grantElements(g acl.Grant) (single, ranges []nftables.SetElement) {
	return portElements(&content{tcp: g.TCP, udp: g.UDP})
}
