package flows

import (
	"container/list"
	"context"
	"log/slog"
	"time"

	"github.com/segmesh/segmesh/api"
)

// DefaultThrottleCapacity is how many aggregates a Throttle tracks when
// given a capacity below 1.
const DefaultThrottleCapacity = 4096

// flowKey identifies an aggregate by its api.Flow fields.
type flowKey struct {
	src, dst, proto, verdict string
	port                     uint16
}

func keyOf(f *api.Flow) flowKey {
	return flowKey{src: f.SrcAddr, dst: f.DstAddr, proto: f.Proto, verdict: f.Verdict, port: f.Port}
}

type throttleEntry struct {
	key       flowKey
	written   time.Time // when the aggregate was last let through
	pending   api.Flow  // the newest update held back
	isPending bool
}

// Throttle limits how often one aggregate is written: at most once per
// interval. An update that comes too soon is held back, newest wins, and
// released by Due once the interval has passed, so the last count of a burst
// still gets written. It tracks at most its capacity of aggregates (least
// recently written dropped first, releasing its held update). Not safe for
// concurrent use.
type Throttle struct {
	interval time.Duration
	capacity int
	entries  map[flowKey]*list.Element // values are *throttleEntry
	order    *list.List                // front: most recently written
}

// NewThrottle returns a Throttle with the given minimum interval between two
// writes of one aggregate and capacity (DefaultThrottleCapacity if < 1).
func NewThrottle(interval time.Duration, capacity int) *Throttle {
	if capacity < 1 {
		capacity = DefaultThrottleCapacity
	}
	return &Throttle{interval: interval, capacity: capacity, entries: make(map[flowKey]*list.Element), order: list.New()}
}

// Offer takes an update of an aggregate at time now and returns the flows to
// write now: f itself when its aggregate was not written in the last
// interval, plus a held-back update of an aggregate dropped to make room.
func (t *Throttle) Offer(f api.Flow, now time.Time) []api.Flow {
	k := keyOf(&f)
	if el, ok := t.entries[k]; ok {
		e := el.Value.(*throttleEntry)
		if now.Sub(e.written) < t.interval {
			e.pending, e.isPending = f, true
			return nil
		}
		e.written, e.pending, e.isPending = now, api.Flow{}, false
		t.order.MoveToFront(el)
		return []api.Flow{f}
	}
	var out []api.Flow
	if t.order.Len() >= t.capacity {
		el := t.order.Back()
		e := el.Value.(*throttleEntry)
		if e.isPending {
			out = append(out, e.pending)
		}
		delete(t.entries, e.key)
		t.order.Remove(el)
	}
	t.entries[k] = t.order.PushFront(&throttleEntry{key: k, written: now})
	return append(out, f)
}

// Due returns the held-back updates whose aggregate was last written at
// least an interval before now (marking them written now), and forgets
// aggregates with nothing held back that are older than the interval.
func (t *Throttle) Due(now time.Time) []api.Flow {
	var out []api.Flow
	for el := t.order.Back(); el != nil; {
		e := el.Value.(*throttleEntry)
		if now.Sub(e.written) < t.interval {
			break // the rest is newer
		}
		prev := el.Prev()
		if e.isPending {
			out = append(out, e.pending)
			e.written, e.pending, e.isPending = now, api.Flow{}, false
			t.order.MoveToFront(el)
		} else {
			delete(t.entries, e.key)
			t.order.Remove(el)
		}
		el = prev
	}
	return out
}

// Flush returns every held-back update at once (at shutdown) and forgets all
// aggregates.
func (t *Throttle) Flush() []api.Flow {
	var out []api.Flow
	for el := t.order.Back(); el != nil; el = el.Prev() {
		if e := el.Value.(*throttleEntry); e.isPending {
			out = append(out, e.pending)
		}
	}
	clear(t.entries)
	t.order.Init()
	return out
}

// Len returns the number of aggregates tracked.
func (t *Throttle) Len() int { return t.order.Len() }

// Feed writes the updates it receives (e.g. an Aggregator subscription) to
// l, through a Throttle of the given interval (1 s when <= 0), until ctx is
// done or updates is closed; then it takes the updates already buffered in
// the channel, writes the held-back updates and returns. Write errors are logged (rate-limited) and do not stop it. It
// runs on the caller's goroutine.
func Feed(ctx context.Context, l *Log, updates <-chan api.Flow, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	warn := newLimitedLog(log.With("component", "flowlog", "path", l.Path()), time.Minute)
	th := NewThrottle(interval, 0)
	write := func(fs []api.Flow) {
		for _, f := range fs {
			if err := l.Write(f); err != nil {
				warn.Warn("write", "cannot write flow log", "error", err)
			}
		}
	}
	tick := time.NewTicker(interval / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// Take what is already buffered, then write everything held.
			for drained := false; !drained; {
				select {
				case f, ok := <-updates:
					if !ok {
						drained = true
						break
					}
					write(th.Offer(f, time.Now()))
				default:
					drained = true
				}
			}
			write(th.Flush())
			return
		case f, ok := <-updates:
			if !ok {
				write(th.Flush())
				return
			}
			write(th.Offer(f, time.Now()))
		case now := <-tick.C:
			write(th.Due(now))
		}
	}
}
