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
// written pages stay resident for good. releaseIdleHeap hands them back once
// they exceed idleHeapThreshold, checked every idleHeapCheck. With 200 peers
// and gossip uncompressed, the footprint bench's median RSS read 40.1 MB at
// 10 s/4 MiB, 39.1 and 40.3 MB at 5 s/2 MiB and 42.4 MB at 5 s/1 MiB: the
// setting is within that row's run-to-run spread (about ±1.5 MB), and idle
// CPU with 50 peers stayed at 0.50-0.63% of a core (row 8b).
const (
	idleHeapCheck     = 5 * time.Second
	idleHeapThreshold = 2 << 20
)

// heapFreeMetric is the runtime's estimate of free heap memory that is
// backed by physical memory (free, not yet returned to the OS).
const heapFreeMetric = "/memory/classes/heap/free:bytes"

// idleHeap reads heapFreeMetric.
func idleHeap() uint64 {
	s := []metrics.Sample{{Name: heapFreeMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// releaseIdleHeap returns the free heap pages to the OS when more than
// threshold bytes of them are resident, and reports whether it did. It
// costs one collection (a few ms of CPU with 200 peers, whose heap is
// mostly pointer-free buffers).
func releaseIdleHeap(threshold uint64) bool {
	if idleHeap() <= threshold {
		return false
	}
	debug.FreeOSMemory()
	return true
}

// runHeapReleaser calls releaseIdleHeap every interval until stop closes.
func runHeapReleaser(stop <-chan struct{}, interval time.Duration, threshold uint64) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			releaseIdleHeap(threshold)
		}
	}
}
