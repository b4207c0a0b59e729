package metrics

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Segment label values that are not segment lists.
const (
	NoSegment     = "none"    // a known node in no segment
	UnknownSource = "unknown" // an address that is no known peer
)

// SegmentsOf returns the segments of the node that owns an address; ok is
// false when the address belongs to no known peer.
type SegmentsOf func(netip.Addr) (segments []string, ok bool)

// SegmentLabel renders a node's segments as a label value: sorted, without
// duplicates, joined by ","; NoSegment when there is none.
func SegmentLabel(segments []string) string {
	if len(segments) == 0 {
		return NoSegment
	}
	s := slices.Clone(segments)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), ",")
}

// BySegment sums per-source packet counts by (source segments, destination
// segments). dst is this node's segments. A source's label is
// SegmentLabel(its segments), or UnknownSource when segmentsOf does not know
// it. Sources with a zero count are left out.
//
// BySegment is a snapshot: a source that leaves bySrc takes its packets out
// of the sums. For monotonic counters use DenyTotals.
func BySegment(bySrc map[netip.Addr]uint64, segmentsOf SegmentsOf, dst []string) map[SegmentPair]uint64 {
	out := make(map[SegmentPair]uint64)
	d := SegmentLabel(dst)
	for a, n := range bySrc {
		if n == 0 {
			continue
		}
		src := UnknownSource
		if segs, ok := segmentsOf(a); ok {
			src = SegmentLabel(segs)
		}
		out[SegmentPair{Src: src, Dst: d}] += n
	}
	return out
}

// DenyTotals turns successive readings of the kernel's per-source counts
// (nft.Firewall.DeniedBySource, whose sources age out and then count again
// from zero, and which does not tell denied from audited packets) into
// monotonic totals by segment pair, split by the mode each growth was
// observed in. Its methods are safe for concurrent use.
//
// Observe it at every scrape and also periodically, at least every half of
// the kernel's source timeout (nft.SeenTimeout), so that the last packets of
// a source are observed before it ages out; and right before switching
// between enforce and audit mode, so that growth is attributed to the mode
// it happened in. Growth is labelled with the source's segments at the time
// it is observed.
type DenyTotals struct {
	mu              sync.Mutex
	last            map[netip.Addr]uint64
	denied, audited map[SegmentPair]uint64
}

// Observe takes a reading bySrc made while the node was in audit mode
// (audit) or enforce mode, adds each source's growth since the previous
// reading — its whole count when the source is new or its count went down
// (it aged out and came back) — to the totals, and returns copies of the
// totals. A pair, once present, stays (a counter does not disappear).
func (t *DenyTotals) Observe(bySrc map[netip.Addr]uint64, audit bool, segmentsOf SegmentsOf, dst []string) (denied, audited map[SegmentPair]uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.denied == nil {
		t.last, t.denied, t.audited = map[netip.Addr]uint64{}, map[SegmentPair]uint64{}, map[SegmentPair]uint64{}
	}
	growth := make(map[netip.Addr]uint64, len(bySrc))
	for a, n := range bySrc {
		prev, ok := t.last[a]
		switch {
		case !ok || n < prev:
			growth[a] = n
		default:
			growth[a] = n - prev
		}
	}
	t.last = maps.Clone(bySrc)
	if t.last == nil {
		t.last = map[netip.Addr]uint64{}
	}
	into := t.denied
	if audit {
		into = t.audited
	}
	for p, n := range BySegment(growth, segmentsOf, dst) {
		into[p] += n
	}
	return maps.Clone(t.denied), maps.Clone(t.audited)
}

// Totals returns copies of the totals without a reading.
func (t *DenyTotals) Totals() (denied, audited map[SegmentPair]uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.denied), maps.Clone(t.audited)
}
