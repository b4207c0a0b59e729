package acl

import (
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// The layout of table inet segmesh (DESIGN.md "nftables", contract):
//
//	table inet segmesh {
//	  counter final
//	  set local4 { type ipv4_addr }       set local6 { type ipv6_addr }
//	  set allow4 { type ipv4_addr . inet_proto . inet_service; size 131072 }   # single ports
//	  set allow6 { type ipv6_addr . inet_proto . inet_service; size 131072 }
//	  set allow4r_000 { type ipv4_addr . inet_proto . inet_service; flags interval }  # port ranges of the
//	  ...                                                                           # sources whose address
//	  set allow4r_127 { ... }                                                       # is N modulo 128
//	  set allow6r_000 { type ipv6_addr . inet_proto . inet_service; flags interval }  # (its last byte's low
//	  ...                                                                           # 7 bits) in allow4r_N
//	  set allow6r_127 { ... }                                                       # or allow6r_N
//	  set icmp4  { type ipv4_addr; size 32768 }   set icmp6  { type ipv6_addr; size 32768 }
//	  set any4   { type ipv4_addr; size 32768 }   set any6   { type ipv6_addr; size 32768 }
//	  set seen4  { type ipv4_addr; size 65535; flags dynamic,timeout; counter; timeout 10m }
//	  set seen6  { type ipv6_addr; size 65535; flags dynamic,timeout; counter; timeout 10m }
//	  map ranges4 { type ipv4_addr : verdict; flags constant
//	    elements = { 0.0.0.0 : jump ranges4_000, ..., 0.0.0.127 : jump ranges4_127 } }
//	  map ranges6 { type ipv6_addr : verdict; flags constant
//	    elements = { :: : jump ranges6_000, ..., ::7f : jump ranges6_127 } }
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
//	    ip saddr & 0.0.0.127 vmap @ranges4
//	    ip saddr @icmp4 icmp type echo-request accept
//	    ip saddr @any4 accept
//	    ip6 daddr != @local6 counter drop
//	    ip6 saddr . meta l4proto . th dport @allow6 accept
//	    ip6 saddr & ::7f vmap @ranges6
//	    ip6 saddr @icmp6 icmpv6 type echo-request accept
//	    ip6 saddr @any6 accept
//	    limit rate 100/second burst 100 packets log group 8476 snaplen 128
//	    update @seen4 { ip saddr counter }
//	    update @seen6 { ip6 saddr counter }
//	    counter name "final" drop      # audit mode: accept
//	  }
//	  chain ranges4_000 { ip saddr . meta l4proto . th dport @allow4r_000 accept }
//	  ...
//	  chain ranges6_127 { ip6 saddr . meta l4proto . th dport @allow6r_127 accept }
//	}
//
// A port element covering one port goes to the exact-port set allow4/allow6,
// a fixed-size hash set like the source sets (see exactSetSize); a range goes to the interval set
// of its source's shard, allow4r_N/allow6r_N with N the source address
// modulo rangeShards (its last byte's low bits). The kernel keeps interval
// sets of concatenations in its pipapo backend, whose costs grow with the
// elements already in the set: an insertion resizes and copies its lookup
// tables, a deletion walks the set's rules, and the first change of a
// transaction clones the whole set. Sharding by source keeps every set small
// (a first Apply of 10,000 peers with 9 ranges each costs a fifth of one big
// set's, a join or leave touches one small set per family). A packet still
// meets exactly one interval-set lookup, in a set a 128th of the size: the
// constant verdict map ranges4/ranges6, a hash lookup of the masked source,
// jumps to the shard's chain, which accepts when `saddr . l4proto . dport`
// is in the shard's set and otherwise returns to mesh_in (DESIGN's check is
// unchanged: all the elements of a source are in its shard's set).
//
// Earlier layouts (one interval set allow4r/allow6r; before that,
// allow4/allow6 as interval sets holding every port element; before that, no
// seen sets) are foreign to Install: it deletes and recreates the table in
// one transaction.
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
	setAllow4R = "allow4r" // logical name of the shards allow4r_000..
	setAllow6R = "allow6r"
	setICMP4   = "icmp4"
	setICMP6   = "icmp6"
	setAny4    = "any4"
	setAny6    = "any6"
	setSeen4   = "seen4"
	setSeen6   = "seen6"
	mapRanges4 = "ranges4" // verdict map to the shard chains ranges4_000..
	mapRanges6 = "ranges6"

	// rangeShards is the number of interval sets (and chains) per family,
	// a power of two up to 256: a source's shard is its address modulo
	// rangeShards. Measured with 10,000 peers with 9 ranges each: a first
	// Apply costs the same with 64 or 128 shards and more with fewer (the
	// sets' growth) or more (per set); a leave costs in proportion to the
	// shard's size (half with 128 than with 64).
	rangeShards = 128

	// exactSetSize is the size of allow4 and allow6, sourceSetSize that of
	// icmp4, icmp6, any4 and any6 (sets of sources: at most one element per
	// peer). With a size, the kernel picks its fixed-size hash backend
	// (nft_set_hash.c: buckets for 4/3 of the size, allocated at creation:
	// 2 MiB per exact-port set, 512 KiB per source set), which never
	// resizes; without one it grows a resizable hash table while the first
	// Apply fills it, which made a first Apply of 180,000 single ports and
	// 20,000 ICMP sources cost twice as much (measured). A size is also a
	// capacity: Apply refuses more elements. Twice the exact-port size
	// measured 15% slower (a bucket array twice as large misses the caches
	// more) for twice the memory.
	exactSetSize  = 1 << 17
	sourceSetSize = 1 << 15

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

// Indices of the logical managed sets in setNames (and elementSet, kinds).
// The range sets sAllow4R/sAllow6R are each rangeShards kernel sets.
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

// setNames lists the logical sets whose elements Apply manages.
var setNames = []string{setLocal4, setLocal6, setAllow4, setAllow6, setAllow4R, setAllow6R, setICMP4, setICMP6, setAny4, setAny6}

// seenSetNames lists the dynamic sets the kernel fills (per-source counts of
// the packets that reach the final rule). Apply never touches their elements.
var seenSetNames = []string{setSeen4, setSeen6}

// shardNames[f][i] is the name of shard i of allow4r (f 0) or allow6r (f 1);
// shardChains likewise of chain ranges4_NNN/ranges6_NNN.
var shardNames, shardChains = func() (sets, chains [2][rangeShards]string) {
	for f, fam := range []string{"4", "6"} {
		for i := range rangeShards {
			sets[f][i] = fmt.Sprintf("allow%sr_%03d", fam, i)
			chains[f][i] = fmt.Sprintf("ranges%s_%03d", fam, i)
		}
	}
	return sets, chains
}()

// kernelSetNames returns the names of the kernel sets holding the elements
// of logical set i.
func kernelSetNames(i int) []string {
	switch i {
	case sAllow4R:
		return shardNames[0][:]
	case sAllow6R:
		return shardNames[1][:]
	}
	return setNames[i : i+1]
}

// setCapacity returns the most elements logical set i holds (its kernel
// size; 0: no limit).
func setCapacity(i int) int {
	switch i {
	case sAllow4, sAllow6:
		return exactSetSize
	case sICMP4, sICMP6, sAny4, sAny6:
		return sourceSetSize
	}
	return 0
}

// logicalSet maps every kernel set name Apply manages, and every logical
// set name, to its logical set.
var logicalSet = func() map[string]int {
	m := make(map[string]int, 2*numSets+2*rangeShards)
	for i := range numSets {
		m[setNames[i]] = i
		for _, name := range kernelSetNames(i) {
			m[name] = i
		}
	}
	return m
}()

// shardOf returns the shard of e's source: its address modulo rangeShards.
func shardOf(e elem) int { return int(e.lo % rangeShards) }

var (
	allowKey4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	allowKey6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
)

// layout holds the objects of table inet segmesh.
type layout struct {
	table      *nftables.Table
	prerouting *nftables.Chain
	meshIn     *nftables.Chain
	shards     [2][rangeShards]*nftables.Chain // ranges4_NN, ranges6_NN
	counter    *nftables.CounterObj
	sets       map[string]*nftables.Set // every set and map, by name
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
		sets:    make(map[string]*nftables.Set),
	}
	for f := range l.shards {
		for i := range l.shards[f] {
			l.shards[f][i] = &nftables.Chain{Name: shardChains[f][i], Table: t}
		}
	}
	for i := range numSets {
		for _, name := range kernelSetNames(i) {
			s := &nftables.Set{Table: t, Name: name}
			switch i {
			case sLocal4:
				s.KeyType = nftables.TypeIPAddr
			case sLocal6:
				s.KeyType = nftables.TypeIP6Addr
			case sICMP4, sAny4:
				s.KeyType, s.Size = nftables.TypeIPAddr, sourceSetSize
			case sICMP6, sAny6:
				s.KeyType, s.Size = nftables.TypeIP6Addr, sourceSetSize
			case sAllow4:
				s.KeyType, s.Concatenation, s.Size = allowKey4, true, exactSetSize
			case sAllow6:
				s.KeyType, s.Concatenation, s.Size = allowKey6, true, exactSetSize
			case sAllow4R:
				s.KeyType, s.Interval, s.Concatenation = allowKey4, true, true
			case sAllow6R:
				s.KeyType, s.Interval, s.Concatenation = allowKey6, true, true
			}
			l.sets[name] = s
		}
	}
	for _, name := range seenSetNames {
		l.sets[name] = &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIPAddr,
			Dynamic: true, HasTimeout: true, Timeout: SeenTimeout, Counter: true, Size: seenSize}
	}
	l.sets[setSeen6].KeyType = nftables.TypeIP6Addr
	// The library sends a constant set's element count as its size.
	l.sets[mapRanges4] = &nftables.Set{Table: t, Name: mapRanges4, KeyType: nftables.TypeIPAddr,
		DataType: nftables.TypeVerdict, IsMap: true, Constant: true}
	l.sets[mapRanges6] = &nftables.Set{Table: t, Name: mapRanges6, KeyType: nftables.TypeIP6Addr,
		DataType: nftables.TypeVerdict, IsMap: true, Constant: true}
	return l
}

// chains returns the chains of the layout in creation (and listing) order.
func (l *layout) chains() []*nftables.Chain {
	out := []*nftables.Chain{l.prerouting, l.meshIn}
	for f := range l.shards {
		out = append(out, l.shards[f][:]...)
	}
	return out
}

// setOrder returns the names of the sets and maps in creation order.
func setOrder() []string {
	var out []string
	for i := range numSets {
		out = append(out, kernelSetNames(i)...)
	}
	return append(out, setSeen4, setSeen6, mapRanges4, mapRanges6)
}

// shardMapElements returns the elements of map ranges4 (v6 false) or
// ranges6: shard number (as an address) -> jump to the shard's chain.
func shardMapElements(v6 bool) []nftables.SetElement {
	f, n := 0, 4
	if v6 {
		f, n = 1, 16
	}
	out := make([]nftables.SetElement, rangeShards)
	for i := range out {
		key := make([]byte, n)
		key[n-1] = byte(i)
		out[i] = nftables.SetElement{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: shardChains[f][i]}}
	}
	return out
}

// addAll queues the whole table (empty sets, final rule per audit) on c.
// The caller flushes; the final rule's handle is then in the returned rule.
func (l *layout) addAll(c *nftables.Conn, cfg Config, audit bool) (final *nftables.Rule, err error) {
	c.AddTable(l.table)
	for _, ch := range l.chains() {
		c.AddChain(ch)
	}
	c.AddObj(l.counter)
	for _, name := range setOrder() {
		var elems []nftables.SetElement
		switch name {
		case mapRanges4:
			elems = shardMapElements(false)
		case mapRanges6:
			elems = shardMapElements(true)
		}
		if err := c.AddSet(l.sets[name], elems); err != nil {
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
