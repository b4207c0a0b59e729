package flows

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
)

func flowN(src string, count uint64) api.Flow {
	return api.Flow{SrcName: "web-1", SrcKey: "K", SrcAddr: src, SrcSegments: []string{"web"}, DstAddr: "100.80.3.7",
		DstSegments: []string{"db"}, Proto: "tcp", Port: 5432, Verdict: api.VerdictDenied, Count: count,
		FirstSeen: t0, LastSeen: t0.Add(time.Duration(count) * time.Second)}
}

// readLines decodes the JSON lines of path; every line must be one object
// with exactly the api.Flow fields.
func readLines(t *testing.T, path string) []api.Flow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []api.Flow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		keys := make([]string, 0, len(raw))
		for k := range raw {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := []string{"bytes", "connections", "count", "direction", "dst_addr", "dst_segments", "first_seen", "last_seen", "packets", "peer", "peer_segments", "port", "proto",
			"src_addr", "src_key", "src_name", "src_segments", "verdict"}
		if !slices.Equal(keys, want) {
			t.Fatalf("line keys %v, want %v", keys, want)
		}
		var fl api.Flow
		if err := json.Unmarshal(sc.Bytes(), &fl); err != nil {
			t.Fatal(err)
		}
		out = append(out, fl)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLogWritesLinesWithMode0640(t *testing.T) {
	old := syscall.Umask(0o077) // a strict umask must not change the mode
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "flows.jsonl")
	l, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 3 {
		if err := l.Write(flowN("100.80.1.2", uint64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", st.Mode().Perm())
	}
	got := readLines(t, path)
	if len(got) != 3 || got[2].Count != 3 || got[0].SrcName != "web-1" || !got[1].LastSeen.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("lines = %+v", got)
	}

	// Appends to an existing file, keeping its mode.
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	l2, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Write(flowN("100.80.1.9", 1)); err != nil {
		t.Fatal(err)
	}
	_ = l2.Close()
	if got := readLines(t, path); len(got) != 4 || got[3].SrcAddr != "100.80.1.9" {
		t.Fatalf("after reopen-append: %d lines", len(got))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("existing file mode changed to %v", st.Mode().Perm())
	}
}

func TestLogReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flows.jsonl")
	l, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Write(flowN("100.80.1.1", 1)); err != nil {
		t.Fatal(err)
	}
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	// Before Reopen, writes still go to the moved file.
	if err := l.Write(flowN("100.80.1.2", 1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(flowN("100.80.1.3", 1)); err != nil {
		t.Fatal(err)
	}
	if got := readLines(t, rotated); len(got) != 2 || got[1].SrcAddr != "100.80.1.2" {
		t.Fatalf("rotated file: %+v", got)
	}
	if got := readLines(t, path); len(got) != 1 || got[0].SrcAddr != "100.80.1.3" {
		t.Fatalf("new file: %+v", got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Fatalf("new file mode %v", st.Mode().Perm())
	}
}

func TestLogErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenLog(filepath.Join(dir, "missing", "flows.jsonl")); err == nil {
		t.Fatal("OpenLog in a missing directory succeeded")
	}
	path := filepath.Join(dir, "flows.jsonl")
	l, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	// Reopen fails when the directory is gone: the old file stays in use.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	l2, err := OpenLog(filepath.Join(sub, "f.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(sub); err != nil {
		t.Fatal(err)
	}
	if err := l2.Reopen(); err == nil {
		t.Fatal("Reopen into a removed directory succeeded")
	}
	if err := l2.Write(flowN("100.80.1.1", 1)); err != nil {
		t.Fatalf("write after a failed Reopen: %v", err)
	}
	_ = l2.Close()

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := l.Write(flowN("100.80.1.1", 1)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := l.Reopen(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Reopen after Close: %v, want os.ErrClosed", err)
	}

	// A full device: the error comes back, nothing panics.
	if _, err := os.Stat("/dev/full"); err == nil {
		full, err := OpenLog("/dev/full")
		if err != nil {
			t.Fatal(err)
		}
		defer full.Close()
		if err := full.Write(flowN("100.80.1.1", 1)); err == nil || !strings.Contains(err.Error(), "no space") {
			t.Fatalf("Write to /dev/full: %v, want ENOSPC", err)
		}
	}
}

func TestThrottle(t *testing.T) {
	th := NewThrottle(time.Second, 2)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	counts := func(fs []api.Flow) []uint64 {
		var out []uint64
		for _, f := range fs {
			out = append(out, f.Count)
		}
		return out
	}
	// First update of an aggregate: written at once.
	if got := counts(th.Offer(flowN("100.80.0.1", 1), at(0))); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("first offer wrote %v", got)
	}
	// A burst within the interval: held back, newest wins.
	for c := uint64(2); c <= 50; c++ {
		if got := th.Offer(flowN("100.80.0.1", c), at(int(c)*10)); len(got) != 0 {
			t.Fatalf("offer %d within the interval wrote %v", c, counts(got))
		}
	}
	if got := th.Due(at(999)); len(got) != 0 {
		t.Fatalf("Due before the interval: %v", counts(got))
	}
	if got := counts(th.Due(at(1000))); !slices.Equal(got, []uint64{50}) {
		t.Fatalf("Due after the interval = %v, want [50]", got)
	}
	if got := th.Due(at(1500)); len(got) != 0 {
		t.Fatalf("Due again: %v", counts(got))
	}
	// Released at 1000: the next update waits until 2000.
	if got := th.Offer(flowN("100.80.0.1", 51), at(1600)); len(got) != 0 {
		t.Fatalf("offer after a release wrote %v", counts(got))
	}
	// Other aggregates are independent; capacity 2 evicts the least
	// recently written and releases its held update at once.
	if got := counts(th.Offer(flowN("100.80.0.2", 1), at(1700))); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("second aggregate wrote %v", got)
	}
	if got := th.Offer(flowN("100.80.0.3", 7), at(1800)); len(got) != 2 || got[0].Count != 51 || got[1].SrcAddr != "100.80.0.3" {
		t.Fatalf("eviction wrote %+v", got)
	}
	if th.Len() != 2 {
		t.Fatalf("Len = %d, want 2", th.Len())
	}
	// Aggregates with nothing held back are forgotten after the interval.
	if got := th.Due(at(5000)); len(got) != 0 {
		t.Fatalf("Due with nothing held: %v", counts(got))
	}
	if th.Len() != 0 {
		t.Fatalf("Len after expiry = %d, want 0", th.Len())
	}
	th.Offer(flowN("100.80.0.4", 1), at(6000))
	th.Offer(flowN("100.80.0.4", 2), at(6100))
	if got := counts(th.Flush()); !slices.Equal(got, []uint64{2}) || th.Len() != 0 {
		t.Fatalf("Flush = %v, Len %d", got, th.Len())
	}
}

// TestFeed: a flood of updates of one aggregate makes a handful of lines, and
// the last count is written when the feed ends.
func TestFeed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.jsonl")
	l, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := NewAggregator(16, nil, nil, nil)
	updates, stop := a.Subscribe(1024)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Feed(ctx, l, updates, 200*time.Millisecond, nil)
	}()
	start := time.Now()
	const n = 1000
	for range n {
		a.Add(Packet{Src: mustAddr("100.80.0.1"), Dst: mustAddr("100.80.3.7"), Proto: 6, Port: 22})
	}
	elapsed := time.Since(start)
	cancel()
	<-done
	stop()
	lines := readLines(t, path)
	// At most one line per 200 ms while adding, plus the first and the final flush.
	if max := int(elapsed/(200*time.Millisecond)) + 2; len(lines) == 0 || len(lines) > max {
		t.Fatalf("%d lines for %d updates in %v, want 1..%d", len(lines), n, elapsed, max)
	}
	if lines[0].Count != 1 || lines[len(lines)-1].Count != n {
		t.Fatalf("first count %d, last count %d, want 1 and %d", lines[0].Count, lines[len(lines)-1].Count, n)
	}

	// Feed ends when the channel closes, flushing too.
	l2, err := OpenLog(filepath.Join(t.TempDir(), "f2.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	ch := make(chan api.Flow, 3)
	ch <- flowN("100.80.0.1", 1)
	ch <- flowN("100.80.0.1", 2)
	ch <- flowN("100.80.0.1", 3)
	close(ch)
	Feed(t.Context(), l2, ch, time.Hour, nil)
	if got := readLines(t, l2.Path()); len(got) != 2 || got[0].Count != 1 || got[1].Count != 3 {
		t.Fatalf("lines after close: %+v", got)
	}
}
