package nft

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// The layout of table inet segmesh (DESIGN.md "nftables" and "Identity-based
// sets", contract):
//
//	table inet segmesh {
//	  counter final
//	  set local4 { type ipv4_addr }       set local6 { type ipv6_addr }
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
//	    meta nfproto ipv4 jump src4
//	    ip6 daddr != @local6 counter drop
//	    meta nfproto ipv6 jump src6
//	    limit rate 100/second burst 100 packets log group 8476 snaplen 128
//	    update @seen4 { ip saddr counter }
//	    update @seen6 { ip6 saddr counter }
//	    counter name "final" drop      # audit mode: accept
//	  }
//	  chain src4 {                         # rewritten when identities come or go
//	    ip saddr @id_N_s4 goto id_N        # one rule per identity, most sources first
//	  }
//	  chain src6 { ip6 saddr @id_N_s6 goto id_N ... }
//	  # per identity N (its exact set of source segments):
//	  set id_N_s4 { type ipv4_addr }      set id_N_s6 { type ipv6_addr }   # its sources
//	  set id_N_p { type inet_proto . inet_service }                   # single ports
//	  set id_N_r { type inet_proto . inet_service; flags interval }   # port ranges
//	  chain id_N {
//	    meta l4proto . th dport @id_N_p goto allow_in
//	    meta l4proto . th dport @id_N_r goto allow_in
//	    meta l4proto icmp icmp type echo-request goto allow_in      # icmp allowed
//	    meta l4proto ipv6-icmp icmpv6 type echo-request goto allow_in
//	    goto allow_in                                               # any allowed
//	  }
//	  chain allow_in { counts into obs4/6 and new4/6 (observe.go), then accept
//	  }
//	}
//
// A packet's source selects its identity's chain: src4/src6 test the
// identities' source sets in turn (one hash lookup each, the identity with
// the most sources first) and go to the chain of the one holding it; that
// chain accepts or returns to mesh_in, where the deny path follows. A
// source in no identity's set goes straight to the deny path. A peer
// joining into an existing identity is one set element per family; a
// policy change rewrites only identity chains and their sets.
//
// Why not one verdict map `ip saddr vmap @src4` (one lookup whatever the
// number of identities): every batch adding a jump element to a verdict
// map makes the kernel validate the whole table, walking every element of
// every verdict map — 11 ms per join at 100,000 sources. Plain set
// elements are not validated. A map address -> identity number followed by
// a lookup of that number (two lookups in one rule) would avoid both, but
// nft 1.0.6 aborts listing such a rule. Every ip/ip6 match is
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
	chainSrc4 = "src4"
	chainSrc6 = "src6"
	setSeen4  = "seen4"
	setSeen6  = "seen6"

	// SourceCapacity is the most source addresses per family, over all
	// identities.
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

// idChain, idPorts, idRanges and idSources name the objects of identity id.
func idChain(id uint32) string  { return idPrefix + strconv.FormatUint(uint64(id), 10) }
func idPorts(id uint32) string  { return idChain(id) + "_p" }
func idRanges(id uint32) string { return idChain(id) + "_r" }

// idSources names the source set of identity id in family f (0: IPv4).
func idSources(id uint32, f int) string { return idChain(id) + idSetSuffixes[2+f] }

// idSetSuffixes are the suffixes of an identity's sets after id_N.
var idSetSuffixes = [4]string{"_p", "_r", "_s4", "_s6"}

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
	allowIn    *nftables.Chain    // every identity's accept: observed, then accepted
	src        [2]*nftables.Chain // src4, src6: identity dispatch
	// output, mesh_out, out_deny: the fixed chains of egress (egress.go)
	output, meshOut, outDeny *nftables.Chain
	qIn, qOut                *nftables.Chain // quarantine (quarantine.go)
	counter                  *nftables.CounterObj
	sets                     map[string]*nftables.Set // the fixed sets and maps, by name
	// finalHandle is the kernel handle of the final rule of mesh_in.
	finalHandle uint64
}

// fixedSets lists the fixed sets and maps in creation order.
var fixedSets = append([]string{setLocal4, setLocal6, setSeen4, setSeen6, setObs4, setObs6, setNew4, setNew6}, quarantineSetNames()...)

func newLayout() *layout {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	policy := nftables.ChainPolicyAccept
	l := &layout{
		table: t,
		prerouting: &nftables.Chain{Name: chainPrerouting, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(preroutingPriority), Policy: &policy},
		meshIn:  &nftables.Chain{Name: chainMeshIn, Table: t},
		allowIn: &nftables.Chain{Name: chainAllowIn, Table: t},
		src:     [2]*nftables.Chain{{Name: chainSrc4, Table: t}, {Name: chainSrc6, Table: t}},
		counter: &nftables.CounterObj{Table: t, Name: counterFinal},
		output: &nftables.Chain{Name: chainOutput, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &policy},
		meshOut: &nftables.Chain{Name: chainMeshOut, Table: t},
		qIn:     &nftables.Chain{Name: chainQIn, Table: t},
		qOut:    &nftables.Chain{Name: chainQOut, Table: t},
		outDeny: &nftables.Chain{Name: chainOutDeny, Table: t},
		sets: map[string]*nftables.Set{
			setLocal4: {Table: t, Name: setLocal4, KeyType: nftables.TypeIPAddr},
			setLocal6: {Table: t, Name: setLocal6, KeyType: nftables.TypeIP6Addr},
			setSeen4: {Table: t, Name: setSeen4, KeyType: nftables.TypeIPAddr, Dynamic: true, HasTimeout: true,
				Timeout: SeenTimeout, Counter: true, Size: seenSize},
			setSeen6: {Table: t, Name: setSeen6, KeyType: nftables.TypeIP6Addr, Dynamic: true, HasTimeout: true,
				Timeout: SeenTimeout, Counter: true, Size: seenSize},
		},
	}
	for name, s := range observeSets(t) {
		l.sets[name] = s
	}
	for name, s := range quarantineSetDefs(t) {
		l.sets[name] = s
	}
	return l
}

// chains returns the fixed chains in creation order (src4 and src6 before
// mesh_in, which jumps to them; out_deny, mesh_out, output likewise).
func (l *layout) chains() []*nftables.Chain {
	return append([]*nftables.Chain{l.qIn, l.qOut, l.prerouting, l.allowIn, l.src[0], l.src[1], l.meshIn}, l.egressChains()...)
}

// ruleChains returns the fixed chains whose rules are fixed too (the
// dispatch chains' rules follow the identities).
func (l *layout) ruleChains() []*nftables.Chain {
	return []*nftables.Chain{l.prerouting, l.meshIn, l.allowIn, l.qIn, l.qOut}
}

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
	// Egress before the first ApplyEgress: replies only.
	l.addRules(c, l.outDeny, outDenyRules(audit))
	l.addRules(c, l.meshOut, meshOutRules(nil))
	l.addRules(c, l.output, outputRules(cfg))
	return final, nil
}

func (l *layout) addRules(c *nftables.Conn, ch *nftables.Chain, rules [][]expr.Any) {
	for _, exprs := range rules {
		c.AddRule(&nftables.Rule{Table: l.table, Chain: ch, Exprs: exprs})
	}
}

// identitySets returns the two port sets of identity id (not yet added).
func (l *layout) identitySets(id uint32) (ports, ranges *nftables.Set) {
	ports = &nftables.Set{Table: l.table, Name: idPorts(id), KeyType: portKey, Concatenation: true}
	ranges = &nftables.Set{Table: l.table, Name: idRanges(id), KeyType: portKey, Concatenation: true, Interval: true}
	return ports, ranges
}

// sourceSet returns the source set of identity id in family f (not yet
// added): a plain hash set the kernel resizes as it grows.
func (l *layout) sourceSet(id uint32, f int) *nftables.Set {
	kt := nftables.TypeIPAddr
	if f == 1 {
		kt = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: l.table, Name: idSources(id, f), KeyType: kt}
}

// allIdentitySets returns the four sets of identity id: ports, ranges,
// IPv4 sources, IPv6 sources.
func (l *layout) allIdentitySets(id uint32) [4]*nftables.Set {
	p, r := l.identitySets(id)
	return [4]*nftables.Set{p, r, l.sourceSet(id, 0), l.sourceSet(id, 1)}
}
