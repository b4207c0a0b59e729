package flows

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/segmesh/segmesh/api"
)

// DefaultAllowedCapacity bounds the allowed-flow aggregates (DESIGN.md
// "Observed flows": 16,384 by default, oldest first out).
const DefaultAllowedCapacity = 16384

// Reading is one entry of a kernel reading of allowed traffic into this
// node (nft.Firewall.Observed): counters since the kernel's entry was
// made.
type Reading struct {
	Src                         netip.Addr
	Proto                       uint8
	Port                        uint16
	Packets, Bytes, Connections uint64
}

type allowedKey struct {
	src   netip.Addr
	proto uint8
	port  uint16
}

// peerInfo is what aggregates show of their source's peer as resolved at
// their last update: one shared by all aggregates of a peer (both of its
// addresses), counted by refs and found by key in Allowed.peers while it
// is the peer's current one. Never modified once made.
type peerInfo struct {
	name, key string
	segments  []string
	refs      int
}

func (p *peerInfo) is(q Peer) bool {
	return p.name == q.Name && p.key == q.Key && slices.Equal(p.segments, q.Segments)
}

// selfInfo is this node's address in a family and its segments, shared by
// the aggregates updated while they held. Never modified once made.
type selfInfo struct {
	dst      netip.Addr
	segments []string
}

// allowedEntry is one aggregate, kept compact: the Allowed holds up to
// 16,384 of them (DESIGN.md "Observed flows": at most 8 MB of heap at
// that bound, issue 18 row 11d); the api.Flow is built when asked for.
type allowedEntry struct {
	key        allowedKey
	prev, next *allowedEntry // recency list, most recent after the sentinel
	peer       *peerInfo
	self       *selfInfo
	// The kernel's counters at the last reading.
	kPackets, kBytes, kConns uint64
	// The aggregate's totals.
	packets, bytes, conns uint64
	first, last           int64 // unix nanoseconds
}

// flow is e as the API shows it.
func (e *allowedEntry) flow() api.Flow {
	f := api.Flow{
		SrcName: e.peer.name, SrcKey: e.peer.key, SrcAddr: e.key.src.String(), Peer: e.peer.name,
		SrcSegments: cloneStrings(e.peer.segments), PeerSegments: cloneStrings(e.peer.segments),
		DstSegments: cloneStrings(e.self.segments),
		Proto:       ProtoName(e.key.proto), Port: e.key.port,
		Verdict: api.VerdictAllowed, Direction: api.DirectionIn,
		Connections: e.conns, Packets: e.packets, Bytes: e.bytes, Count: e.packets,
		FirstSeen: time.Unix(0, e.first), LastSeen: time.Unix(0, e.last),
	}
	if e.self.dst.IsValid() {
		f.DstAddr = e.self.dst.String()
	}
	return f
}

// Allowed folds successive kernel readings into aggregates of allowed
// flows: one per (source, protocol, port), with exact connection, packet
// and byte counts while it lives — a reading adds each counter's growth
// since the previous one (its whole value when the kernel's entry is new
// or started again after its timeout). It holds at most its capacity: a
// new aggregate evicts the least recently updated. Safe for concurrent
// use.
type Allowed struct {
	capacity int
	resolve  Resolver
	self     func(src netip.Addr) (dst netip.Addr, segments []string)

	mu      sync.Mutex
	entries map[allowedKey]*allowedEntry
	lru     allowedEntry         // sentinel of the recency list: lru.next is the most recent
	peers   map[string]*peerInfo // by peer key ("" for sources of no known peer): the current one
	self4   *selfInfo            // the last one made for each family
	self6   *selfInfo
}

// NewAllowed returns an empty Allowed of capacity (DefaultAllowedCapacity
// below 1). resolve names a source's peer; self gives this node's address
// in the source's family and its segments.
func NewAllowed(capacity int, resolve Resolver, self func(src netip.Addr) (netip.Addr, []string)) *Allowed {
	if capacity < 1 {
		capacity = DefaultAllowedCapacity
	}
	a := &Allowed{capacity: capacity, resolve: resolve, self: self, entries: map[allowedKey]*allowedEntry{},
		peers: map[string]*peerInfo{}}
	a.lru.prev, a.lru.next = &a.lru, &a.lru
	return a
}

func (a *Allowed) unlink(e *allowedEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (a *Allowed) pushFront(e *allowedEntry) {
	e.prev, e.next = &a.lru, a.lru.next
	a.lru.next.prev = e
	a.lru.next = e
}

// Observe takes a reading made at now and returns copies of the
// aggregates that grew and how many connections the reading added.
func (a *Allowed) Observe(now time.Time, rs []Reading) (grown []api.Flow, conns uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at := now.UnixNano()
	var self4, self6 *selfInfo // this node, once per reading and family
	for _, r := range rs {
		k := allowedKey{r.Src, r.Proto, r.Port}
		e := a.entries[k]
		var gp, gb, gc uint64
		switch {
		case e == nil || r.Packets < e.kPackets || r.Bytes < e.kBytes || r.Connections < e.kConns:
			gp, gb, gc = r.Packets, r.Bytes, r.Connections // new, or the kernel's entry started again
		default:
			gp, gb, gc = r.Packets-e.kPackets, r.Bytes-e.kBytes, r.Connections-e.kConns
		}
		if e != nil {
			e.kPackets, e.kBytes, e.kConns = r.Packets, r.Bytes, r.Connections
		}
		if gp == 0 && gc == 0 {
			continue
		}
		if e == nil {
			if len(a.entries) >= a.capacity {
				old := a.lru.prev
				a.unlink(old)
				a.release(old.peer)
				delete(a.entries, old.key)
			}
			e = &allowedEntry{key: k, kPackets: r.Packets, kBytes: r.Bytes, kConns: r.Connections, first: at}
			a.entries[k] = e
		} else {
			a.unlink(e)
		}
		a.pushFront(e)
		peer, _ := a.resolve(r.Src)
		if e.peer == nil || !e.peer.is(peer) {
			a.release(e.peer)
			e.peer = a.peerInfo(peer)
		}
		self := &self4
		if r.Src.Is6() {
			self = &self6
		}
		if *self == nil {
			*self = a.selfInfo(r.Src)
		}
		e.self = *self
		conns += gc
		e.conns += gc
		e.packets += gp
		e.bytes += gb
		e.last = at
		grown = append(grown, e.flow())
	}
	return grown, conns
}

// peerInfo returns the shared peerInfo of p, counting one more reference.
func (a *Allowed) peerInfo(p Peer) *peerInfo {
	pi := a.peers[p.Key]
	if pi == nil || !pi.is(p) {
		pi = &peerInfo{name: p.Name, key: p.Key, segments: cloneStrings(p.Segments)}
		a.peers[p.Key] = pi
	}
	pi.refs++
	return pi
}

// release drops one reference to pi (nil: none).
func (a *Allowed) release(pi *peerInfo) {
	if pi == nil {
		return
	}
	pi.refs--
	if pi.refs == 0 && a.peers[pi.key] == pi {
		delete(a.peers, pi.key)
	}
}

// selfInfo returns this node's address and segments for sources in src's
// family: the last one made when unchanged.
func (a *Allowed) selfInfo(src netip.Addr) *selfInfo {
	dst, segs := a.self(src)
	last := &a.self4
	if src.Is6() {
		last = &a.self6
	}
	if *last == nil || (*last).dst != dst || !slices.Equal((*last).segments, segs) {
		*last = &selfInfo{dst: dst, segments: cloneStrings(segs)}
	}
	return *last
}

// Len returns the number of aggregates held.
func (a *Allowed) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

// Snapshot returns copies of all aggregates, newest first.
func (a *Allowed) Snapshot() []api.Flow {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]api.Flow, 0, len(a.entries))
	for e := a.lru.next; e != &a.lru; e = e.next {
		out = append(out, e.flow())
	}
	return out
}
