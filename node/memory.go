package node

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// DefaultGCPercent is the garbage-collector target (GOGC) the daemon runs
// with unless the operator sets GOGC.
//
// Why not Go's 100: most of the daemon's live heap is wireguard-go's message
// buffers (31 of 43 MiB with 200 peers: the receive and TUN batches, 3 x 128
// buffers of 64 KiB held for the life of the device, mostly never written at
// idle, so they cost address space, not RSS). GOGC sizes the garbage allowed
// between collections as a share of the whole live heap, those buffers
// included, so at 100 the short-lived allocations of the periodic sync
// filled some 40 MiB of written memory: 73-77 MB RSS with 200 peers against
// 49-52 MB at 25 (BENCHMARKS.md row 8a). The collector's work is the
// pointer-bearing part of the heap, which is small: at 25, a collection
// every couple of seconds with 200 peers costs about 0.6% of a core (0.1%
// with 50).
//
// No soft memory limit is set by default: the live heap grows with the
// packets in flight under load (pooled 64 KiB buffers; about 300 MiB during
// the data-plane benchmark), and a fixed limit below it would make the
// collector run back to back exactly when throughput matters. An operator
// who wants one sets GOMEMLIMIT, which the Go runtime honours by itself.
const DefaultGCPercent = 25

// MemorySettings describes the collector settings TuneMemory left in force.
type MemorySettings struct {
	GCPercent int    // effective GOGC (-1: off)
	Source    string // "GOGC" when the environment set it, else "default"
	Limit     int64  // soft memory limit in bytes (math.MaxInt64: none)
	LimitEnv  bool   // GOMEMLIMIT came from the environment
}

// TuneMemory applies the daemon's garbage-collector defaults for a
// long-running process: GOGC=DefaultGCPercent unless getenv reports GOGC set
// (then the runtime's own reading of it stays in force, including "off").
// GOMEMLIMIT is left to the runtime. getenv is os.LookupEnv in the daemon.
// It changes process-wide runtime state: call it once, from the command that
// runs the daemon, before the node starts.
func TuneMemory(getenv func(string) (string, bool)) MemorySettings {
	s := MemorySettings{Source: "default"}
	if v, ok := getenv("GOGC"); ok && strings.TrimSpace(v) != "" {
		s.Source = "GOGC"
		s.GCPercent = debug.SetGCPercent(-1) // read the runtime's value...
		debug.SetGCPercent(s.GCPercent)      // ...and put it back
	} else {
		debug.SetGCPercent(DefaultGCPercent)
		s.GCPercent = DefaultGCPercent
	}
	_, s.LimitEnv = getenv("GOMEMLIMIT")
	s.Limit = debug.SetMemoryLimit(-1) // negative: read only
	return s
}

// String is the settings in GOGC/GOMEMLIMIT terms, for the start-up log.
func (s MemorySettings) String() string {
	gc := "off"
	if s.GCPercent >= 0 {
		gc = strconv.Itoa(s.GCPercent)
	}
	lim := "none"
	if s.Limit != math.MaxInt64 {
		lim = strconv.FormatInt(s.Limit>>20, 10) + "MiB"
	}
	return "GOGC=" + gc + " (" + s.Source + "), GOMEMLIMIT=" + lim
}

// Idle heap release: the Go scavenger keeps free heap pages for reuse up to
// about 10% above the collector's goal, and that goal counts wireguard-go's
// long-held 64 KiB buffers, which are mostly never written. So after a burst
// of allocation (peers joining, a large policy) several MiB of free but
// written pages stay resident for good, and between two collections the
// garbage of the periodic sync (about 1.3 MB/s with 200 peers, most of it a
// dump of the WireGuard device) fills up to GOGC's share of that goal, some
// 10 MiB of written pages. The heap releaser checks every idleHeapCheck: when
// more than idleHeapThreshold bytes of free pages are resident, or more than
// idleGarbageThreshold bytes were allocated since the last collection, it
// collects and hands the free pages back (debug.FreeOSMemory).
const (
	idleHeapCheck        = time.Second
	idleHeapThreshold    = 2 << 20
	idleGarbageThreshold = 3 << 20
)

// heapFreeMetric is the runtime's estimate of free heap memory that is
// backed by physical memory (free, not yet returned to the OS);
// heapAllocsMetric the bytes allocated since the process started and
// gcCyclesMetric the collections completed.
const (
	heapFreeMetric   = "/memory/classes/heap/free:bytes"
	heapAllocsMetric = "/gc/heap/allocs:bytes"
	gcCyclesMetric   = "/gc/cycles/total:gc-cycles"
)

// heapState is one reading of the three metrics above.
type heapState struct{ free, allocs, cycles uint64 }

func readHeap() heapState {
	s := []metrics.Sample{{Name: heapFreeMetric}, {Name: heapAllocsMetric}, {Name: gcCyclesMetric}}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return heapState{free: v(0), allocs: v(1), cycles: v(2)}
}

// heapReleaser remembers, between checks, how much had been allocated at
// the last collection it saw.
type heapReleaser struct {
	freeThreshold, garbageThreshold uint64
	cycles, allocsAtCycle           uint64
}

// check collects and releases when free resident pages or the garbage
// written since the last collection pass their thresholds, and reports
// whether it did. A release costs one collection (a few ms of CPU with 200
// peers, whose heap is mostly pointer-free buffers). A collection that happened since the last check counts
// as of now (its exact time is unknown).
func (r *heapReleaser) check() bool {
	h := readHeap()
	if h.cycles != r.cycles {
		r.cycles, r.allocsAtCycle = h.cycles, h.allocs
	}
	if h.free <= r.freeThreshold && h.allocs-r.allocsAtCycle <= r.garbageThreshold {
		return false
	}
	debug.FreeOSMemory()
	h = readHeap()
	r.cycles, r.allocsAtCycle = h.cycles, h.allocs
	return true
}

// newHeapReleaser starts counting garbage from now.
func newHeapReleaser(freeThreshold, garbageThreshold uint64) *heapReleaser {
	h := readHeap()
	return &heapReleaser{freeThreshold: freeThreshold, garbageThreshold: garbageThreshold, cycles: h.cycles, allocsAtCycle: h.allocs}
}

// runHeapReleaser checks every interval until stop closes.
func runHeapReleaser(stop <-chan struct{}, interval time.Duration, freeThreshold, garbageThreshold uint64) {
	r := newHeapReleaser(freeThreshold, garbageThreshold)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			r.check()
		}
	}
}
