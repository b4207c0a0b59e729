package flows

import (
	"container/list"
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

type allowedEntry struct {
	key  allowedKey
	last Reading // the kernel's counters at the last reading
	flow api.Flow
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
	entries map[allowedKey]*list.Element // values are *allowedEntry
	lru     *list.List
}

// NewAllowed returns an empty Allowed of capacity (DefaultAllowedCapacity
// below 1). resolve names a source's peer; self gives this node's address
// in the source's family and its segments.
func NewAllowed(capacity int, resolve Resolver, self func(src netip.Addr) (netip.Addr, []string)) *Allowed {
	if capacity < 1 {
		capacity = DefaultAllowedCapacity
	}
	return &Allowed{capacity: capacity, resolve: resolve, self: self,
		entries: map[allowedKey]*list.Element{}, lru: list.New()}
}

// Observe takes a reading made at now and returns copies of the
// aggregates that grew and how many connections the reading added.
func (a *Allowed) Observe(now time.Time, rs []Reading) (grown []api.Flow, conns uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range rs {
		k := allowedKey{r.Src, r.Proto, r.Port}
		var e *allowedEntry
		el, ok := a.entries[k]
		if ok {
			e = el.Value.(*allowedEntry)
		}
		var grow Reading
		switch {
		case e == nil || r.Packets < e.last.Packets || r.Bytes < e.last.Bytes || r.Connections < e.last.Connections:
			grow = r // new, or the kernel's entry started again
		default:
			grow = Reading{Packets: r.Packets - e.last.Packets, Bytes: r.Bytes - e.last.Bytes, Connections: r.Connections - e.last.Connections}
		}
		if e != nil {
			e.last = r
		}
		if grow.Packets == 0 && grow.Connections == 0 {
			continue
		}
		if e == nil {
			if a.lru.Len() >= a.capacity {
				old := a.lru.Back()
				delete(a.entries, old.Value.(*allowedEntry).key)
				a.lru.Remove(old)
			}
			e = &allowedEntry{key: k, last: r, flow: api.Flow{
				SrcAddr: r.Src.String(), Proto: ProtoName(r.Proto), Port: r.Port,
				Verdict: api.VerdictAllowed, Direction: api.DirectionIn, FirstSeen: now,
			}}
			el = a.lru.PushFront(e)
			a.entries[k] = el
		} else {
			a.lru.MoveToFront(el)
		}
		f := &e.flow
		conns += grow.Connections
		f.Connections += grow.Connections
		f.Packets += grow.Packets
		f.Bytes += grow.Bytes
		f.Count = f.Packets
		f.LastSeen = now
		peer, _ := a.resolve(r.Src)
		dst, segs := a.self(r.Src)
		f.SrcName, f.SrcKey, f.Peer = peer.Name, peer.Key, peer.Name
		if dst.IsValid() {
			f.DstAddr = dst.String()
		}
		if !slices.Equal(f.SrcSegments, peer.Segments) || f.SrcSegments == nil {
			f.SrcSegments = cloneStrings(peer.Segments)
			f.PeerSegments = cloneStrings(peer.Segments)
		}
		if !slices.Equal(f.DstSegments, segs) || f.DstSegments == nil {
			f.DstSegments = cloneStrings(segs)
		}
		grown = append(grown, cloneFlow(*f))
	}
	return grown, conns
}

// Len returns the number of aggregates held.
func (a *Allowed) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}

// Snapshot returns copies of all aggregates, newest first.
func (a *Allowed) Snapshot() []api.Flow {
	a.mu.Lock()
	defer a.mu.Unlock()
	return snapshot(a.lru, func(v any) api.Flow { return v.(*allowedEntry).flow })
}
