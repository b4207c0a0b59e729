package nft

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
)

// The layout of table inet segmesh (DESIGN.md "nftables" and "Identity-based
// sets", contract):
//
//	table inet segmesh {
//	  counter final
//	  set local4 { type ipv4_addr }       set local6 { type ipv6_addr }
//	  map src4 { type ipv4_addr : verdict; size 262144 }   # source -> jump id_N
//	  map src6 { type ipv6_addr : verdict; size 262144 }
//	  set seen4 { type ipv4_addr; size 65535; flags dynamic,timeout; counter; timeout 10m }
//	  set seen6 { type ipv6_addr; size 65535; flags dynamic,timeout; counter; timeout 10m }
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
//	    ip saddr vmap @src4
//	    ip6 daddr != @local6 counter drop
//	    ip6 saddr vmap @src6
//	    limit rate 100/second burst 100 packets log group 8476 snaplen 128
//	    update @seen4 { ip saddr counter }
//	    update @seen6 { ip6 saddr counter }
//	    counter name "final" drop      # audit mode: accept
//	  }
//	  # per identity N (its exact set of source segments):
//	  set id_N_p { type inet_proto . inet_service }                   # single ports
//	  set id_N_r { type inet_proto . inet_service; flags interval }   # port ranges
//	  chain id_N {
//	    meta l4proto . th dport @id_N_p accept
//	    meta l4proto . th dport @id_N_r accept
//	    meta l4proto icmp icmp type echo-request accept             # icmp allowed
//	    meta l4proto ipv6-icmp icmpv6 type echo-request accept
//	    accept                                                      # any allowed
//	  }
//	}
//
// A packet's source selects its identity's chain with one hash lookup; the
// chain accepts or returns to mesh_in, where the deny path follows. A source
// with no element in src4/src6 goes straight to the deny path. A peer
// joining into an existing identity is one map element per family; a policy
// change rewrites only identity chains and their sets. Every ip/ip6 match is
// preceded by `meta nfproto ipv4|ipv6`, as nft does in an inet table.
// mesh_in always ends in a verdict.
//
// The previous release's table (per source `saddr . l4proto . dport` sets,
// range shards) is recognized by Install and replaced by the first Apply in
// one batch (see Install).
const (
	chainPrerouting = "prerouting"
	chainMeshIn     = "mesh_in"
	counterFinal    = "final"

	setLocal4 = "local4"
	setLocal6 = "local6"
	mapSrc4   = "src4"
	mapSrc6   = "src6"
	setSeen4  = "seen4"
	setSeen6  = "seen6"

	// SourceCapacity is the size of src4 and src6: the most source
	// addresses per family. With a size the kernel picks its fixed-size
	// hash backend, which never resizes (buckets allocated at creation).
	SourceCapacity = 1 << 18

	// IdentityCapacity bounds the identities (chains) of one table.
	IdentityCapacity = 1 << 16

	// PortCapacity bounds the port elements of one identity per set.
	PortCapacity = 1 << 16

	// seenSize bounds each seen set (see DeniedBySource).
	seenSize = 65535

	// preroutingPriority: after conntrack (-200), before DNAT (-100).
	preroutingPriority nftables.ChainPriority = -150

	idPrefix = "id_"
)

// SeenTimeout is how long a source stays in the per-source counters of
// DeniedBySource after its last denied or audited packet.
const SeenTimeout = 10 * time.Minute

// portKey is the key type of the identity sets: `inet_proto . inet_service`.
var portKey = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)

// idChain, idPorts and idRanges name the objects of identity id.
func idChain(id uint32) string  { return idPrefix + strconv.FormatUint(uint64(id), 10) }
func idPorts(id uint32) string  { return idChain(id) + "_p" }
func idRanges(id uint32) string { return idChain(id) + "_r" }

// parseIDChain returns the identity of chain name id_N.
func parseIDChain(name string) (uint32, bool) {
	s, ok := strings.CutPrefix(name, idPrefix)
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint32(n), true
}

// layout holds the fixed objects of table inet segmesh.
type layout struct {
	table      *nftables.Table
	prerouting *nftables.Chain
	meshIn     *nftables.Chain
	counter    *nftables.CounterObj
	sets       map[string]*nftables.Set // the fixed sets and maps, by name
	// finalHandle is the kernel handle of the final rule of mesh_in.
	finalHandle uint64
}

// fixedSets lists the fixed sets and maps in creation order.
var fixedSets = []string{setLocal4, setLocal6, mapSrc4, mapSrc6, setSeen4, setSeen6}

func newLayout() *layout {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	policy := nftables.ChainPolicyAccept
	l := &layout{
		table: t,
		prerouting: &nftables.Chain{Name: chainPrerouting, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(preroutingPriority), Policy: &policy},
		meshIn:  &nftables.Chain{Name: chainMeshIn, Table: t},
		counter: &nftables.CounterObj{Table: t, Name: counterFinal},
		sets: map[string]*nftables.Set{
			setLocal4: {Table: t, Name: setLocal4, KeyType: nftables.TypeIPAddr},
			setLocal6: {Table: t, Name: setLocal6, KeyType: nftables.TypeIP6Addr},
			mapSrc4: {Table: t, Name: mapSrc4, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict,
				IsMap: true, Size: SourceCapacity},
			mapSrc6: {Table: t, Name: mapSrc6, KeyType: nftables.TypeIP6Addr, DataType: nftables.TypeVerdict,
				IsMap: true, Size: SourceCapacity},
			setSeen4: {Table: t, Name: setSeen4, KeyType: nftables.TypeIPAddr, Dynamic: true, HasTimeout: true,
				Timeout: SeenTimeout, Counter: true, Size: seenSize},
			setSeen6: {Table: t, Name: setSeen6, KeyType: nftables.TypeIP6Addr, Dynamic: true, HasTimeout: true,
				Timeout: SeenTimeout, Counter: true, Size: seenSize},
		},
	}
	return l
}

// chains returns the fixed chains in creation order.
func (l *layout) chains() []*nftables.Chain { return []*nftables.Chain{l.prerouting, l.meshIn} }

// addAll queues the fixed part of the table (empty sets, final rule per
// audit) on c. The caller flushes; the final rule's handle is then in the
// returned rule.
func (l *layout) addAll(c *nftables.Conn, cfg Config, audit bool) (final *nftables.Rule, err error) {
	c.AddTable(l.table)
	for _, ch := range l.chains() {
		c.AddChain(ch)
	}
	c.AddObj(l.counter)
	for _, name := range fixedSets {
		if err := c.AddSet(l.sets[name], nil); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
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

// identitySets returns the two sets of identity id (not yet added).
func (l *layout) identitySets(id uint32) (ports, ranges *nftables.Set) {
	ports = &nftables.Set{Table: l.table, Name: idPorts(id), KeyType: portKey, Concatenation: true}
	ranges = &nftables.Set{Table: l.table, Name: idRanges(id), KeyType: portKey, Concatenation: true, Interval: true}
	return ports, ranges
}
