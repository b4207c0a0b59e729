package node

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// gcPercent reads the runtime's GOGC without changing it.
func gcPercent() int {
	v := debug.SetGCPercent(-1)
	debug.SetGCPercent(v)
	return v
}

// keepGC restores the process's collector settings after a test.
func keepGC(t *testing.T) {
	t.Helper()
	gc, lim := gcPercent(), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(lim)
	})
}

func fakeEnv(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestTuneMemoryDefault(t *testing.T) {
	keepGC(t)
	debug.SetGCPercent(100)
	for _, vars := range []map[string]string{nil, {"GOGC": ""}, {"GOGC": "  "}} {
		s := TuneMemory(fakeEnv(vars))
		if got := gcPercent(); got != DefaultGCPercent {
			t.Errorf("env %v: runtime GOGC %d, want %d", vars, got, DefaultGCPercent)
		}
		if s.GCPercent != DefaultGCPercent || s.Source != "default" || s.LimitEnv {
			t.Errorf("env %v: settings %+v", vars, s)
		}
		debug.SetGCPercent(100)
	}
}

func TestTuneMemoryRespectsGOGC(t *testing.T) {
	keepGC(t)
	for _, v := range []int{77, -1} { // the runtime parsed GOGC=77 / GOGC=off at start
		debug.SetGCPercent(v)
		s := TuneMemory(fakeEnv(map[string]string{"GOGC": "set"}))
		if got := gcPercent(); got != v {
			t.Errorf("GOGC set: runtime GOGC changed to %d, want %d kept", got, v)
		}
		if s.GCPercent != v || s.Source != "GOGC" {
			t.Errorf("GOGC set: settings %+v, want GCPercent %d from GOGC", s, v)
		}
	}
}

func TestTuneMemoryLimitLeftToRuntime(t *testing.T) {
	keepGC(t)
	debug.SetMemoryLimit(64 << 20) // as the runtime would from GOMEMLIMIT=64MiB
	s := TuneMemory(fakeEnv(map[string]string{"GOMEMLIMIT": "64MiB"}))
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("memory limit changed to %d", got)
	}
	if !s.LimitEnv || s.Limit != 64<<20 {
		t.Errorf("settings %+v, want the 64 MiB limit from GOMEMLIMIT", s)
	}
	if got, want := s.String(), "GOGC=25 (default), GOMEMLIMIT=64MiB"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	s = TuneMemory(fakeEnv(nil))
	if got, want := s.String(), "GOGC=25 (default), GOMEMLIMIT=none"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	debug.SetGCPercent(-1)
	s = TuneMemory(fakeEnv(map[string]string{"GOGC": "off"}))
	if got, want := s.String(), "GOGC=off (GOGC), GOMEMLIMIT=none"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// sink keeps test allocations reachable until the test drops them.
var sink [][]byte

func TestReleaseIdleHeap(t *testing.T) {
	keepGC(t)
	// Write 32 MiB, then drop it: after a collection its pages are free but
	// resident.
	for range 512 {
		b := make([]byte, 64<<10)
		for i := range b {
			b[i] = 1
		}
		sink = append(sink, b)
	}
	sink = nil
	runtime.GC()
	// Other tests of this package leave goroutines that allocate and free
	// while this one runs, so "nothing idle" is judged with a threshold of
	// 8 MiB: a quarter of what was dropped, above that background.
	const threshold = 8 << 20
	r := newHeapReleaser(threshold, math.MaxUint64) // free pages only
	if before := readHeap().free; before <= threshold {
		t.Fatalf("runtime kept only %d free bytes after dropping 32 MiB: the test premise does not hold", before)
	}
	if !r.check() {
		t.Fatal("the releaser did nothing with more than the threshold free")
	}
	if after := readHeap().free; after > threshold {
		t.Errorf("%d free resident bytes left after the release, want ≤ %d", after, threshold)
	}
	if r.check() {
		t.Error("released again with nothing idle")
	}
}

func TestRunHeapReleaserStops(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { runHeapReleaser(stop, time.Millisecond, math.MaxUint64, math.MaxUint64); close(done) }()
	close(stop)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("runHeapReleaser did not return after stop")
	}
}

var garbageSink []byte

// The releaser collects once more than its threshold of garbage was
// allocated since the last collection, and not again until there is.
func TestHeapReleaserCollectsAfterGarbage(t *testing.T) {
	keepGC(t)
	debug.SetGCPercent(-1) // only the releaser collects during the test
	r := newHeapReleaser(math.MaxUint64, 4<<20)
	if r.check() {
		t.Fatal("collected before any garbage")
	}
	before := readHeap().cycles
	for range 64 { // 8 MiB of garbage
		garbageSink = make([]byte, 128<<10)
	}
	garbageSink = nil
	if !r.check() {
		t.Fatal("did not collect after 8 MiB of garbage (threshold 4 MiB)")
	}
	if readHeap().cycles == before {
		t.Fatal("check reported a collection that did not happen")
	}
	if r.check() {
		t.Fatal("collected again with nothing allocated since")
	}
}
