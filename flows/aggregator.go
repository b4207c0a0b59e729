package flows

import (
	"container/list"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/segmesh/segmesh/api"
)

// DefaultCapacity is the aggregate capacity NewAggregator uses for a
// capacity below 1.
const DefaultCapacity = 4096

// Peer is what a Resolver knows about a source address.
type Peer struct {
	Name, Key string   // node name and base64 public key
	Segments  []string // the peer's segments
}

// Resolver maps a packet source to the mesh peer that owns it; false when no
// known peer does. It must be safe for concurrent use and quick (it runs on
// every Add).
type Resolver func(src netip.Addr) (Peer, bool)

// aggKey identifies one aggregate.
type aggKey struct {
	src, dst netip.Addr
	proto    uint8
	port     uint16
	verdict  string
	out      bool
	workload string
}

type aggEntry struct {
	key  aggKey
	flow api.Flow
}

// Aggregator folds logged packets into flow aggregates: one per (source,
// destination, protocol, port, verdict), counting packets with first and
// last seen times. It holds at most its capacity of aggregates: a new one
// evicts the least recently updated. All methods are safe for concurrent use.
type Aggregator struct {
	capacity int
	resolve  Resolver
	self     func() []string
	verdict  func() string

	// local returns the segments of a local identity ("" the node's) for
	// egress denials; nil: self for every one.
	local func(workload string) []string

	mu      sync.Mutex
	entries map[aggKey]*list.Element // values are *aggEntry
	lru     *list.List               // front: most recently updated
	subs    map[uint64]chan api.Flow
	nextSub uint64
}

// NewAggregator returns an empty Aggregator holding at most capacity
// aggregates (DefaultCapacity when capacity < 1). At every Add it asks
// resolve for the source peer (name, key, segments), self for this node's
// segments (DstSegments) and verdict for the current verdict
// (api.VerdictDenied or api.VerdictAudited, following the policy mode). Nil
// functions mean: no known peer, no segments, api.VerdictDenied.
func NewAggregator(capacity int, resolve Resolver, self func() (segments []string), verdict func() string) *Aggregator {
	if capacity < 1 {
		capacity = DefaultCapacity
	}
	if resolve == nil {
		resolve = func(netip.Addr) (Peer, bool) { return Peer{}, false }
	}
	if self == nil {
		self = func() []string { return nil }
	}
	if verdict == nil {
		verdict = func() string { return api.VerdictDenied }
	}
	return &Aggregator{
		capacity: capacity,
		resolve:  resolve,
		self:     self,
		verdict:  verdict,
		entries:  make(map[aggKey]*list.Element),
		lru:      list.New(),
		subs:     make(map[uint64]chan api.Flow),
	}
}

// SetLocalSegments sets how egress denials name their source's segments
// (a local workload's, "" for the node's); call before the first Add.
func (a *Aggregator) SetLocalSegments(f func(workload string) []string) { a.local = f }

// Add counts p in its aggregate, creating it (and evicting the least
// recently updated aggregate when full) if needed, and returns a copy of the
// updated aggregate, which also goes to every subscriber. The peer fields
// are resolved now, so they follow the membership. A zero p.Time counts as
// now; LastSeen never goes backwards.
func (a *Aggregator) Add(p Packet) api.Flow {
	verdict := a.verdict()
	remote := p.Src
	if p.Out {
		remote = p.Dst
	}
	peer, known := a.resolve(remote)
	if !known {
		peer = Peer{}
	}
	var self []string
	if p.Out && a.local != nil {
		self = a.local(p.Workload)
	} else {
		self = a.self()
	}
	t := p.Time
	if t.IsZero() {
		t = time.Now()
	}
	if !hasPorts(p.Proto) {
		p.Port = 0
	}
	k := aggKey{src: p.Src, dst: p.Dst, proto: p.Proto, port: p.Port, verdict: verdict, out: p.Out, workload: p.Workload}

	a.mu.Lock()
	defer a.mu.Unlock()
	var e *aggEntry
	if el, ok := a.entries[k]; ok {
		e = el.Value.(*aggEntry)
		a.lru.MoveToFront(el)
		e.flow.Count++
		if t.After(e.flow.LastSeen) {
			e.flow.LastSeen = t
		}
		if t.Before(e.flow.FirstSeen) {
			e.flow.FirstSeen = t
		}
	} else {
		if a.lru.Len() >= a.capacity {
			old := a.lru.Back()
			delete(a.entries, old.Value.(*aggEntry).key)
			a.lru.Remove(old)
		}
		e = &aggEntry{key: k, flow: api.Flow{
			SrcAddr:   k.src.String(),
			DstAddr:   k.dst.String(),
			Proto:     ProtoName(k.proto),
			Port:      k.port,
			Verdict:   verdict,
			Direction: api.DirectionIn,
			Count:     1,
			FirstSeen: t,
			LastSeen:  t,
		}}
		a.entries[k] = a.lru.PushFront(e)
	}
	srcSegs, dstSegs := peer.Segments, self
	if p.Out {
		srcSegs, dstSegs = self, peer.Segments
		e.flow.Direction, e.flow.Workload = api.DirectionOut, p.Workload
		e.flow.DstName, e.flow.DstKey = peer.Name, peer.Key
		if p.Cgroup != "" {
			e.flow.Cgroup = p.Cgroup
		}
		if p.PID != 0 {
			e.flow.PID, e.flow.Command = p.PID, p.Command
		}
		if p.HasUID {
			uid := p.UID
			e.flow.UID = &uid
		}
	} else {
		e.flow.SrcName, e.flow.SrcKey = peer.Name, peer.Key
	}
	e.flow.Peer, e.flow.Packets, e.flow.Connections = peer.Name, e.flow.Count, e.flow.Count
	if !slices.Equal(e.flow.PeerSegments, peer.Segments) || e.flow.PeerSegments == nil {
		e.flow.PeerSegments = cloneStrings(peer.Segments)
	}
	// The stored slices are never modified in place, only replaced.
	if !slices.Equal(e.flow.SrcSegments, srcSegs) || e.flow.SrcSegments == nil {
		e.flow.SrcSegments = cloneStrings(srcSegs)
	}
	if !slices.Equal(e.flow.DstSegments, dstSegs) || e.flow.DstSegments == nil {
		e.flow.DstSegments = cloneStrings(dstSegs)
	}
	for _, ch := range a.subs {
		select {
		case ch <- cloneFlow(e.flow):
		default: // a slow subscriber misses this update
		}
	}
	return cloneFlow(e.flow)
}

// Len returns the number of aggregates held.
func (a *Aggregator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}

// Snapshot returns copies of all aggregates, newest (LastSeen) first.
func (a *Aggregator) Snapshot() []api.Flow {
	a.mu.Lock()
	defer a.mu.Unlock()
	return snapshot(a.lru, func(v any) api.Flow { return v.(*aggEntry).flow })
}

// snapshot copies the flows of an LRU list of aggregates, newest
// (LastSeen) first: update order is almost LastSeen order, kernel
// timestamps may not be.
func snapshot(l *list.List, flowOf func(any) api.Flow) []api.Flow {
	out := make([]api.Flow, 0, l.Len())
	for el := l.Front(); el != nil; el = el.Next() {
		out = append(out, cloneFlow(flowOf(el.Value)))
	}
	slices.SortStableFunc(out, func(x, y api.Flow) int { return y.LastSeen.Compare(x.LastSeen) })
	return out
}

// Subscribe returns a channel that receives a copy of every aggregate Add
// updates from now on, buffered with buf entries (at least 1), and a
// function that ends the subscription and closes the channel (idempotent).
// Add never waits for a subscriber: when the buffer is full the update is
// not delivered to it (a later update of the same aggregate carries the
// newer count).
func (a *Aggregator) Subscribe(buf int) (<-chan api.Flow, func()) {
	if buf < 1 {
		buf = 1
	}
	ch := make(chan api.Flow, buf)
	a.mu.Lock()
	id := a.nextSub
	a.nextSub++
	a.subs[id] = ch
	a.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			a.mu.Lock()
			delete(a.subs, id)
			close(ch)
			a.mu.Unlock()
		})
	}
}

func cloneFlow(f api.Flow) api.Flow {
	f.SrcSegments = cloneStrings(f.SrcSegments)
	f.DstSegments = cloneStrings(f.DstSegments)
	f.PeerSegments = cloneStrings(f.PeerSegments)
	if f.UID != nil {
		uid := *f.UID
		f.UID = &uid
	}
	return f
}

// cloneStrings copies s; nil and empty both become an empty, non-nil slice
// so JSON shows [] rather than null.
func cloneStrings(s []string) []string {
	return append(make([]string, 0, len(s)), s...)
}
