package metrics

import (
	"fmt"
	"net/netip"
	"testing"
)

var (
	web1  = netip.MustParseAddr("100.80.0.1")
	web1v = netip.MustParseAddr("fd5e:6d00::1")
	app1  = netip.MustParseAddr("100.80.0.2")
	both  = netip.MustParseAddr("100.80.0.3")
	bare  = netip.MustParseAddr("100.80.0.4")
	alien = netip.MustParseAddr("100.80.9.9")
)

// segmentsOf knows web1 (both addresses), app1, both (app and web, listed
// out of order and twice) and bare (in no segment, nil slice).
func segmentsOf(a netip.Addr) ([]string, bool) {
	switch a {
	case web1, web1v:
		return []string{"web"}, true
	case app1:
		return []string{"app"}, true
	case both:
		return []string{"web", "app", "web"}, true
	case bare:
		return nil, true
	}
	return nil, false
}

func TestBySegment(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bySrc map[netip.Addr]uint64
		dst   []string
		want  map[SegmentPair]uint64
	}{
		{"empty", nil, []string{"db"}, map[SegmentPair]uint64{}},
		{"one source", map[netip.Addr]uint64{web1: 5}, []string{"db"},
			map[SegmentPair]uint64{{"web", "db", false}: 5}},
		{"both families of one peer add up", map[netip.Addr]uint64{web1: 5, web1v: 2}, []string{"db"},
			map[SegmentPair]uint64{{"web", "db", false}: 7}},
		{"several segments sorted and deduplicated, dst too", map[netip.Addr]uint64{both: 1, app1: 2}, []string{"db", "cache"},
			map[SegmentPair]uint64{{"app,web", "cache,db", false}: 1, {"app", "cache,db", false}: 2}},
		{"none and unknown", map[netip.Addr]uint64{bare: 3, alien: 4}, nil,
			map[SegmentPair]uint64{{NoSegment, NoSegment, false}: 3, {UnknownSource, NoSegment, false}: 4}},
		{"zero counts left out", map[netip.Addr]uint64{web1: 0, app1: 1}, []string{"db"},
			map[SegmentPair]uint64{{"app", "db", false}: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := BySegment(tc.bySrc, segmentsOf, tc.dst)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("BySegment = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSegmentLabelDoesNotModifyInput(t *testing.T) {
	in := []string{"b", "a", "b"}
	if got := SegmentLabel(in); got != "a,b" {
		t.Errorf("SegmentLabel = %q", got)
	}
	if fmt.Sprint(in) != "[b a b]" {
		t.Errorf("input changed: %v", in)
	}
}

func TestDenyTotalsMonotonic(t *testing.T) {
	var d DenyTotals
	dst := []string{"db"}
	step := func(bySrc map[netip.Addr]uint64, audit bool, wantDenied, wantAudited map[SegmentPair]uint64) {
		t.Helper()
		den, aud := d.Observe(bySrc, audit, segmentsOf, dst)
		if fmt.Sprint(den) != fmt.Sprint(wantDenied) || fmt.Sprint(aud) != fmt.Sprint(wantAudited) {
			t.Errorf("Observe(%v, audit=%v) = %v, %v; want %v, %v", bySrc, audit, den, aud, wantDenied, wantAudited)
		}
	}
	none := map[SegmentPair]uint64{}
	step(nil, false, none, none)
	// First reading: whole counts (e.g. a table kept from a previous run).
	step(map[netip.Addr]uint64{web1: 10, app1: 1}, false,
		map[SegmentPair]uint64{{"web", "db", false}: 10, {"app", "db", false}: 1}, none)
	// Growth only.
	step(map[netip.Addr]uint64{web1: 15, app1: 1}, false,
		map[SegmentPair]uint64{{"web", "db", false}: 15, {"app", "db", false}: 1}, none)
	// Audit mode: growth goes to audited; denied stays.
	step(map[netip.Addr]uint64{web1: 18, app1: 1}, true,
		map[SegmentPair]uint64{{"web", "db", false}: 15, {"app", "db", false}: 1}, map[SegmentPair]uint64{{"web", "db", false}: 3})
	// app1 aged out: its pair stays; web1 aged out and came back with 2.
	step(map[netip.Addr]uint64{web1: 2}, true,
		map[SegmentPair]uint64{{"web", "db", false}: 15, {"app", "db", false}: 1}, map[SegmentPair]uint64{{"web", "db", false}: 5})
	// app1 comes back after having been seen absent: counted from zero.
	step(map[netip.Addr]uint64{web1: 2, app1: 4}, false,
		map[SegmentPair]uint64{{"web", "db", false}: 15, {"app", "db", false}: 5}, map[SegmentPair]uint64{{"web", "db", false}: 5})
	// The returned maps are copies.
	den, _ := d.Observe(map[netip.Addr]uint64{web1: 2, app1: 4}, false, segmentsOf, dst)
	den[SegmentPair{Src: "web", Dst: "db"}] = 0
	den2, _ := d.Observe(map[netip.Addr]uint64{web1: 2, app1: 4}, false, segmentsOf, dst)
	if den2[SegmentPair{Src: "web", Dst: "db"}] != 15 {
		t.Errorf("totals changed through a returned map: %v", den2)
	}
}
