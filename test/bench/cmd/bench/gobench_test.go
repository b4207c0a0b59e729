package main

import (
	"reflect"
	"testing"
)

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/segmesh/segmesh/gossip
cpu: AMD EPYC
BenchmarkCompile/peers=1000/rules=100-2   	     211	   5765658 ns/op	     98870 elements	 3588194 B/op	    4990 allocs/op
BenchmarkRecordEncode/extended-2          	  194548	      5572 ns/op	       547.0 full-bytes	       208.0 meta-bytes	    2128 B/op	      34 allocs/op
BenchmarkDiffOneJoin                      	     132	   8824567 ns/op
--- FAIL: BenchmarkBroken
PASS
ok  	github.com/segmesh/segmesh/gossip	12.3s
`
	got := parseGoBench("gossip", out)
	want := []GoBench{
		{Pkg: "gossip", Name: "BenchmarkCompile/peers=1000/rules=100", Iterations: 211, NsOp: 5765658, BytesOp: 3588194, AllocsOp: 4990, Extra: []string{"98870 elements"}},
		{Pkg: "gossip", Name: "BenchmarkRecordEncode/extended", Iterations: 194548, NsOp: 5572, BytesOp: 2128, AllocsOp: 34, Extra: []string{"547.0 full-bytes", "208.0 meta-bytes"}},
		{Pkg: "gossip", Name: "BenchmarkDiffOneJoin", Iterations: 132, NsOp: 8824567},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseGoBench:\n got %+v\nwant %+v", got, want)
	}
}

func TestLogKind(t *testing.T) {
	for _, c := range []struct {
		msg   string
		kind  string
		alarm bool
	}{
		{"Suspect abc= has failed, no acks received", "probe failed (Suspect … has failed)", true},
		{"Marking abc= as failed, suspect timeout reached (2 peer confirmations)", "node marked failed (suspicion timed out)", true},
		{"Refuting a suspect message (from: abc=)", "refuted a suspicion/death of itself", false},
		{"Failed fallback TCP ping: timeout 1s: read tcp 127.1.0.1:1->127.1.0.2:2", "Failed fallback TCP ping:", false},
		{"", "", false},
	} {
		kind, alarm := logKind(c.msg)
		if kind != c.kind || alarm != c.alarm {
			t.Errorf("logKind(%q) = %q, %v; want %q, %v", c.msg, kind, alarm, c.kind, c.alarm)
		}
	}
}

func TestPercentiles(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	if got := nthSmallest(v, 2); got != 2 {
		t.Errorf("nthSmallest(v, 2) = %v, want 2", got)
	}
	if got := nthSmallest(v, 5); got != 5 {
		t.Errorf("nthSmallest(v, 5) = %v, want 5", got)
	}
	if got := percentile(v, 95); got != 5 {
		t.Errorf("percentile(v, 95) = %v, want 5", got)
	}
}

func TestPairedRatio(t *testing.T) {
	// a is half of b in every run, whatever that run's speed.
	a, b := []float64{1, 4, 1.4}, []float64{2, 8, 2.8}
	if got := pairedRatio(a, b); got != 0.5 {
		t.Errorf("pairedRatio = %v, want 0.5", got)
	}
	if got := pairedRatio([]float64{1, 2}, []float64{0, 4}); got != 0.5 {
		t.Errorf("a zero reference run is skipped: got %v, want 0.5", got)
	}
	if got, want := ratioList(a, b), "0.500, 0.500, 0.500"; got != want {
		t.Errorf("ratioList = %q, want %q", got, want)
	}
}
